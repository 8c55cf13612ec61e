"""core/v1 Events as the components record them (the body of one `POST .../events`).

Each Event gets a fresh name (`<object>.<hex time>`, as client-go's recorder names them) and
refers to its object by kind, namespace, name, uid and resourceVersion.
"""

from __future__ import annotations

import datetime
import time


def object_reference(obj: dict) -> dict:
    m = obj["metadata"]
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", "v1"),
           "name": m["name"], "uid": m.get("uid", ""),
           "resourceVersion": m.get("resourceVersion", "")}
    if m.get("namespace"):
        ref["namespace"] = m["namespace"]
    return ref


def event(obj: dict, type_: str, reason: str, message: str, component: str,
          host: str = "") -> dict:
    """A new Event about `obj` ("Normal" or "Warning"), from `component` (on `host`)."""
    m = obj["metadata"]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = {"component": component, **({"host": host} if host else {})}
    body = {"apiVersion": "v1", "kind": "Event", "type": type_, "reason": reason,
            "message": message, "involvedObject": object_reference(obj), "source": source,
            "reportingComponent": component, "reportingInstance": host, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp}
    body["metadata"] = {"name": f"{m['name']}.{time.time_ns():x}",
                        "namespace": m.get("namespace") or "default"}
    return body
