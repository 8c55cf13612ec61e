"""The REST verbs on resources: get, list, watch, create, update, patch, delete, deletecollection.

Each handler turns an HTTP request into registry calls and the result into the response form
the client negotiated (object, Table, metadata-only). Semantics follow kube-apiserver's
endpoints/handlers: query parameters, status codes (201 on create, 200 otherwise), field
managers, field validation, dry run, and the watch stream framing.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import orjson
import yaml
from aiohttp import web

from svcnet.agent.runtime import logs as runtime_logs
from svcnet.agent.runtime.containers import pod_dir
from svcnet.api import errors
from svcnet.api.errors import APIError
from svcnet.api.request import (Negotiated, Target, decode_object, media_type, negotiate,
                                query_bool, query_int, read_raw)
from svcnet.api.resources import Resource
from svcnet.registry.store import DeleteOptions, Registry, parse_rv
from svcnet.store.backend import Compacted

JSON = "application/json"
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON,
                        headers=headers)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def field_manager(request: web.Request, required: bool = False) -> str:
    """fieldManager from the query, else derived from the User-Agent as the apiserver does."""
    fm = request.query.get("fieldManager")
    if fm is None:
        if required:
            raise errors.bad_request(
                "PATCH request must have a fieldManager: use the fieldManager parameter to set it")
        ua = request.headers.get("User-Agent", "")
        fm = ua.split("/", 1)[0][:128] if ua else "unknown"
    if len(fm) > 128:
        raise errors.bad_request("fieldManager: Too long: may not be more than 128 bytes")
    if not fm.isprintable():
        raise errors.bad_request("fieldManager: Invalid value: invalid characters")
    return fm


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def field_validation(request: web.Request, options_kind: str) -> str:
    from svcnet.api import schema

    return schema.resolve_mode(request.query.get("fieldValidation"), options_kind)


def _warning_headers(warnings: list[str]) -> dict | None:
    if not warnings:
        return None
    return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in warnings)}


def _log_options(q, name: str) -> "runtime_logs.LogOptions":
    """PodLogOptions from the query, validated as the API server does (422 PodLogOptions)."""
    tail, limit = query_int(q, "tailLines"), query_int(q, "limitBytes")
    since_seconds, since_time = query_int(q, "sinceSeconds"), q.get("sinceTime") or None
    since = runtime_logs.parse_time(since_time) if since_time else None
    if since_time and since is None:  # as a metav1.Time query parameter that does not parse
        raise errors.bad_request(f'invalid value for sinceTime: "{since_time}": not an RFC 3339 time')
    errs = runtime_logs.validate(tail, limit, since_seconds, since_time)
    if errs:
        raise errors.invalid("PodLogOptions", "", name, errs)
    if since_seconds is not None:
        since = time.time() - since_seconds
    return runtime_logs.LogOptions(timestamps=query_bool(q.get("timestamps")), since=since,
                                   tail=tail, limit_bytes=limit)


class ResourceHandlers:
    def __init__(self, registry: Registry, logs_dir: Path | None = None):
        self.registry = registry
        self.logs_dir = logs_dir  # the data dir of this server's own node agent

    # ---- helpers ---------------------------------------------------------------------------

    def _matcher(self, request: web.Request, res: Resource) -> Callable[[dict], bool] | None:
        from svcnet.api import selectors

        ls = request.query.get("labelSelector", "")
        fs = request.query.get("fieldSelector", "")
        lsel = selectors.parse_label_selector(ls) if ls else None
        fsel = selectors.parse_field_selector(fs, res.kind) if fs else None
        if lsel is None and fsel is None:
            return None

        def match(obj: dict) -> bool:
            if lsel is not None and not lsel.matches(obj["metadata"].get("labels") or {}):
                return False
            return fsel is None or fsel.matches(obj)

        return match

    def _render_one(self, neg: Negotiated, res: Resource, obj: dict, request: web.Request) -> Any:
        if neg.table:
            from svcnet.api import tables

            return tables.table(res.kind, [obj], _now(),
                                include_object=request.query.get("includeObject", "Metadata"),
                                resource_version=obj["metadata"].get("resourceVersion", ""))
        if neg.metadata_only:
            return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"]}
        return obj

    def _respond(self, neg: Negotiated, body: Any, status: int = 200,
                 headers: dict | None = None) -> web.Response:
        if neg.yaml:
            return web.Response(body=yaml.safe_dump(body, sort_keys=False).encode(), status=status,
                                content_type="application/yaml", headers=headers)
        return json_response(body, status, headers)

    def _decode(self, request: web.Request, t: Target, raw: bytes,
                content_type: str) -> tuple[dict, list[str]]:
        from svcnet.api import schema

        scale = t.subresource == "scale"
        kind = "Scale" if scale else t.res.kind
        api_version = "autoscaling/v1" if scale else t.res.api_version
        obj = decode_object(raw, content_type, kind, api_version)
        options = "CreateOptions" if request.method == "POST" else "UpdateOptions"
        # Strict decoding re-reads JSON bodies for duplicate keys; other encodings pass b"".
        return schema.decode(kind, api_version, raw if media_type(content_type) == JSON else b"",
                             obj, field_validation(request, options))

    def _check_identity(self, t: Target, obj: dict, kind: str, api_version: str) -> None:
        """Kind, apiVersion, namespace and name in the body must agree with the URL."""
        body_kind, body_av = obj.get("kind"), obj.get("apiVersion")
        if body_kind and body_kind != kind or body_av and body_av != api_version:
            raise errors.bad_request(
                f"the API version in the data ({body_av}) does not match the expected API "
                f"version ({api_version})" if body_av and body_av != api_version else
                f"the kind in the data ({body_kind}) does not match the expected kind ({kind})")
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = meta = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if t.res.namespaced:
            ns = meta.get("namespace")
            if ns and t.namespace and ns != t.namespace:
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = t.namespace
        if t.name and meta.get("name") and meta["name"] != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})")
        if t.name and not meta.get("name"):
            meta["name"] = t.name

    # ---- GET / LIST / WATCH ----------------------------------------------------------------

    async def get(self, request: web.Request, t: Target) -> web.Response:
        neg = negotiate(request.headers.get("Accept", ""))
        obj = await self.registry.get(t.res, t.namespace, t.name)
        if t.subresource == "scale":
            return self._respond(neg, scale_of(obj))
        if t.subresource == "log":
            return await self.pod_log(request, t, obj)
        return self._respond(neg, self._render_one(neg, t.res, obj, request))

    async def pod_log(self, request: web.Request, t: Target, pod: dict) -> web.StreamResponse:
        """pods/NAME/log, from the files the node agent writes (this server's own node)."""
        q = request.query
        opts = _log_options(q, t.name)
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        names = [c.get("name") for c in spec.get("containers") or []]
        init_names = [c.get("name") for c in spec.get("initContainers") or []]
        container = q.get("container") or ""
        if not container:
            if len(names) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {t.name}, choose one of: "
                    f"[{' '.join(names)}]" + (f" or one of the init containers: [{' '.join(init_names)}]"
                                              if init_names else ""))
            container = names[0]
        if container not in names + init_names:
            raise errors.bad_request(f"container {container} is not valid for pod {t.name}")
        statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
        st = next((c for c in statuses if c.get("name") == container), None)
        previous = query_bool(q.get("previous"))
        path = None
        if st is not None and self.logs_dir is not None:
            n = int(st.get("restartCount") or 0) - (1 if previous else 0)
            candidate = (pod_dir(self.logs_dir / "pods", t.namespace, t.name, pod["metadata"]["uid"])
                         / container / f"{n}.log")
            if n >= 0 and candidate.exists():
                path = candidate
        if path is None:
            if previous:
                raise errors.bad_request(
                    f'previous terminated container "{container}" in pod "{t.name}" not found')
            waiting = ((st or {}).get("state") or {}).get("waiting") or {}
            raise errors.bad_request(f'container "{container}" in pod "{t.name}" is waiting to start: '
                                     f'{waiting.get("reason") or "ContainerCreating"}')
        follow = query_bool(q.get("follow"))
        if not follow:
            return web.Response(body=runtime_logs.start(path.read_bytes(), opts)[0],
                                content_type="text/plain")
        return await self._follow_log(request, open(path, "rb"), path, opts, t, container, n,
                                      previous)

    async def _follow_log(self, request: web.Request, f, path: Path, opts, t: Target,
                          container: str, n: int, previous: bool) -> web.StreamResponse:
        """Stream a log file as it grows (and is rotated: the old file is read to its end, then
        the new one from its start) until the client leaves (the handler is cancelled), the
        byte limit is reached, or this container instance is over (as the kubelet's follow
        ends when the container exits)."""
        try:
            data, renderer = runtime_logs.start(f.read(), opts, follow=True)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await resp.prepare(request)
            await resp.write(data)
            quiet, running = 0, not previous
            while not renderer.done:
                await asyncio.sleep(0.2)
                chunk = f.read()
                if chunk:
                    quiet = 0
                    out = renderer.feed(chunk)
                    if out:
                        await resp.write(out)
                    continue
                try:
                    rotated = os.stat(path).st_ino != os.fstat(f.fileno()).st_ino
                except FileNotFoundError:
                    break  # the pod is gone
                if rotated:  # what the old file got between the read above and its rotation
                    out = renderer.feed(f.read())
                    if out:
                        await resp.write(out)
                    f.close()
                    f = open(path, "rb")
                elif not running:
                    break  # (the last look after the instance ended found nothing more)
                else:
                    quiet += 1
                    if quiet % 5 == 0:
                        running = await self._log_instance_running(t, container, n)
            await resp.write_eof()
            return resp
        finally:
            f.close()

    async def _log_instance_running(self, t: Target, container: str, restarts: int) -> bool:
        """Whether the container instance whose log is followed is still the running one."""
        try:
            pod = await self.registry.get(t.res, t.namespace, t.name)
        except APIError:
            return False
        status = pod.get("status") or {}
        for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses")
                                                             or []):
            if c.get("name") == container:
                return (int(c.get("restartCount") or 0) == restarts
                        and "running" in (c.get("state") or {}))
        return False

    async def list(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        if query_bool(q.get("watch")):
            return await self.watch(request, t)
        neg = negotiate(request.headers.get("Accept", ""))
        limit = query_int(q, "limit") or 0
        page = await self.registry.list(
            t.res, t.namespace, self._matcher(request, t.res), limit=max(limit, 0),
            continue_token=q.get("continue", ""), resource_version=q.get("resourceVersion", ""),
            rv_match=q.get("resourceVersionMatch", ""))
        if neg.table:
            from svcnet.api import tables

            body = tables.table(t.res.kind, page.items, _now(),
                                include_object=q.get("includeObject", "Metadata"),
                                resource_version=page.resource_version,
                                continue_token=page.continue_token)
            return self._respond(neg, body)
        meta: dict = {"resourceVersion": page.resource_version}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if neg.metadata_only:
            items = [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                      "metadata": o["metadata"]} for o in page.items]
            return self._respond(neg, {"kind": "PartialObjectMetadataList",
                                       "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                                       "items": items})
        for o in page.items:
            # Items of a list carry no kind/apiVersion in kube-apiserver's JSON.
            o.pop("kind", None)
            o.pop("apiVersion", None)
        body = {"kind": t.res.list_kind, "apiVersion": t.res.api_version, "metadata": meta,
                "items": page.items}
        return self._respond(neg, body)

    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        neg = negotiate(request.headers.get("Accept", ""))
        match = self._matcher(request, t.res)
        timeout = query_int(q, "timeoutSeconds")
        if timeout is None:
            timeout = int(1800 * (1 + random.random()))
        bookmarks = query_bool(q.get("allowWatchBookmarks"))
        rv = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents")
        if send_initial is not None and q.get("resourceVersionMatch") != "NotOlderThan":
            raise errors.invalid("WatchOptions", "", "", [errors.forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])
        initial = query_bool(send_initial) if send_initial is not None else rv in ("", "0")
        start = parse_rv(rv)
        initial_objs: list[dict] = []
        if initial:
            page = await self.registry.list(t.res, t.namespace, match)
            initial_objs, start = page.items, int(page.resource_version)
        elif start == 0:
            start = self.registry.backend.current_revision()
        # a compacted `start` is reported as an ERROR event by the pump, as the apiserver does

        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON,
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        first = [True]

        def render(obj: dict) -> Any:
            if neg.table:
                from svcnet.api import tables

                body = tables.table(t.res.kind, [obj], _now(),
                                    include_object=q.get("includeObject", "Metadata"),
                                    resource_version=obj["metadata"].get("resourceVersion", ""),
                                    include_headers=first[0])
                first[0] = False
                return body
            if neg.metadata_only:
                return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"]}
            return obj

        async def send(kind: str, obj: Any) -> None:
            await resp.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")

        def bookmark(revision: int, initial_end: bool = False) -> dict:
            meta: dict = {"resourceVersion": str(revision)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"kind": t.res.kind, "apiVersion": t.res.api_version, "metadata": meta}

        # Small on purpose: a slow client pushes back on the store's watch queue, where events are
        # raw bytes already held by the store and a watcher too far behind is dropped (WatchOverflow).
        queue: asyncio.Queue = asyncio.Queue(maxsize=64)

        async def pump() -> None:
            try:
                async for ev in self.registry.watch(t.res, t.namespace, start, match):
                    await queue.put(ev)
            except Compacted:
                await queue.put(("ERROR", errors.gone(
                    f"too old resource version: {start} "
                    f"({self.registry.backend.compacted_revision() + 1})").status()))
            except Exception as e:  # a watcher that fell behind is closed; the client re-lists
                await queue.put(("ERROR", errors.gone(f"watch closed: {e}").status()))
            await queue.put(None)

        pump_task = asyncio.create_task(pump())
        last_rv = start
        try:
            async with asyncio.timeout(timeout):
                for obj in initial_objs:
                    await send("ADDED", render(obj))
                if initial and send_initial is not None and bookmarks:
                    await send("BOOKMARK", bookmark(start, True))
                while True:
                    try:
                        ev = await asyncio.wait_for(queue.get(), 60 if bookmarks else 3600)
                    except TimeoutError:
                        if bookmarks:
                            await send("BOOKMARK", bookmark(last_rv))
                        continue
                    if ev is None:
                        break
                    kind, obj = ev
                    if kind == "ERROR":
                        await send("ERROR", obj)
                        break
                    last_rv = int(obj["metadata"]["resourceVersion"])
                    await send(kind, render(obj))
        except (TimeoutError, ConnectionResetError):
            pass
        finally:
            pump_task.cancel()
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    # ---- CREATE / UPDATE -------------------------------------------------------------------

    async def create(self, request: web.Request, t: Target) -> web.Response:
        if t.res.namespaced and not t.namespace:
            raise errors.method_not_allowed()
        raw = await read_raw(request)
        obj, warnings = self._decode(request, t, raw, request.headers.get("Content-Type", JSON))
        self._check_identity(t, obj, t.res.kind, t.res.api_version)
        neg = negotiate(request.headers.get("Accept", ""))
        created = await self.registry.create(t.res, obj, field_manager(request), dry_run(request))
        return self._respond(neg, self._render_one(neg, t.res, created, request), 201,
                             _warning_headers(warnings))

    async def update(self, request: web.Request, t: Target) -> web.Response:
        raw = await read_raw(request)
        neg = negotiate(request.headers.get("Accept", ""))
        if t.subresource == "scale":
            scale, warnings = self._decode(request, t, raw, request.headers.get("Content-Type", JSON))
            updated = await self._write_scale(request, t, lambda s: scale)
            return self._respond(neg, updated, 200, _warning_headers(warnings))
        obj, warnings = self._decode(request, t, raw, request.headers.get("Content-Type", JSON))
        self._check_identity(t, obj, t.res.kind, t.res.api_version)
        updated = await self.registry.update(t.res, t.namespace, t.name, obj, t.subresource,
                                             field_manager(request), dry_run(request))
        return self._respond(neg, self._render_one(neg, t.res, updated, request), 200,
                             _warning_headers(warnings))

    async def _write_scale(self, request: web.Request, t: Target,
                           change: Callable[[dict], dict]) -> dict:
        """Apply a change to the Scale view of a Deployment/ReplicaSet and write it back."""
        def mutate(obj: dict) -> dict:
            scale = change(scale_of(obj))
            replicas = (scale.get("spec") or {}).get("replicas", 0)
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid("Scale", "autoscaling", t.name, [errors.invalid_value(
                    "spec.replicas", replicas, "must be greater than or equal to 0")])
            obj.setdefault("spec", {})["replicas"] = replicas
            want_rv = (scale.get("metadata") or {}).get("resourceVersion")
            if want_rv:
                obj["metadata"]["resourceVersion"] = want_rv
            return obj

        updated = await self.registry.guaranteed_update(t.res, t.namespace, t.name, mutate,
                                                        manager=field_manager(request),
                                                        dry_run=dry_run(request))
        return scale_of(updated)

    # ---- PATCH -----------------------------------------------------------------------------

    async def patch(self, request: web.Request, t: Target) -> web.Response:
        from svcnet.api import apply, patch, schema

        ct = media_type(request.headers.get("Content-Type", ""))
        if ct not in PATCH_TYPES:
            raise errors.unsupported_media_type(ct, list(PATCH_TYPES))
        raw = await read_raw(request)
        neg = negotiate(request.headers.get("Accept", ""))
        mode = field_validation(request, "PatchOptions")
        dry = dry_run(request)
        res = t.res
        if t.subresource == "scale":
            if ct == "application/apply-patch+yaml":
                raise errors.unsupported_media_type(ct, list(PATCH_TYPES[:3]))
            updated = await self._write_scale(
                request, t, lambda s: patch.apply_patch(s, ct, raw, "Scale"))
            return self._respond(neg, updated)
        warnings: list[str] = []

        if ct == "application/apply-patch+yaml":
            manager = field_manager(request, required=True)
            force = query_bool(request.query.get("force"))
            applied = apply.parse_apply_body(raw)
            applied, warnings = schema.decode(res.kind, res.api_version, b"", applied, mode)
            self._check_identity(t, applied, res.kind, res.api_version)
            live = await self.registry.try_get(res, t.namespace, t.name)
            if live is None and not t.subresource:
                new = apply.server_side_apply(None, applied, manager, force, res.kind,
                                              _now().strftime("%Y-%m-%dT%H:%M:%SZ"))
                created = await self.registry.create(res, new, "", dry)
                return self._respond(neg, self._render_one(neg, res, created, request), 201,
                                     _warning_headers(warnings))
            if live is None:
                raise errors.not_found(res.plural, res.group, t.name)

            def mutate_apply(old: dict) -> dict:
                return apply.server_side_apply(old, applied, manager, force, res.kind,
                                               _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                                               subresource=t.subresource)

            updated = await self.registry.guaranteed_update(res, t.namespace, t.name, mutate_apply,
                                                            t.subresource, "", dry)
            return self._respond(neg, self._render_one(neg, res, updated, request), 200,
                                 _warning_headers(warnings))

        manager = field_manager(request)

        def mutate(old: dict) -> dict:
            new = patch.apply_patch(old, ct, raw, res.kind)
            new, w = schema.decode(res.kind, res.api_version, raw, new, mode, patch_type=ct)
            warnings[:] = w
            self._check_identity(t, new, res.kind, res.api_version)
            return new

        updated = await self.registry.guaranteed_update(res, t.namespace, t.name, mutate,
                                                        t.subresource, manager, dry)
        return self._respond(neg, self._render_one(neg, res, updated, request), 200,
                             _warning_headers(warnings))

    async def bind(self, request: web.Request, t: Target) -> web.Response:
        """POST pods/NAME/binding: schedule a pod onto a node."""
        body = decode_object(await read_raw(request), request.headers.get("Content-Type", JSON),
                             "Binding", "v1")
        target = body.get("target") or {}
        if not target.get("name"):
            raise errors.invalid("Binding", "", t.name, [errors.required("target.name")])
        await self.registry.bind(t.res, t.namespace, t.name, target["name"])
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                              "status": "Success", "code": 201}, 201)

    # ---- DELETE ----------------------------------------------------------------------------

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        raw = await read_raw(request)
        body: dict = {}
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:
                    body = yaml.safe_load(raw)
                except yaml.YAMLError as e:
                    raise errors.bad_request(f"invalid DeleteOptions: {e}") from None
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
        q = request.query
        grace = query_int(q, "gracePeriodSeconds")
        if grace is None and body.get("gracePeriodSeconds") is not None:
            grace = body["gracePeriodSeconds"]
            if not isinstance(grace, int):
                raise errors.bad_request("gracePeriodSeconds must be an integer")
        policy = q.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = q.get("orphanDependents") or body.get("orphanDependents")
        if policy is None and orphan is not None:
            policy = "Orphan" if str(orphan).lower() == "true" else "Background"
        if policy and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid("DeleteOptions", "", "", [errors.not_supported(
                "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])])
        pre = body.get("preconditions") or {}
        dry = bool(q.getall("dryRun", [])) or bool(body.get("dryRun"))
        return DeleteOptions(grace, policy, pre.get("uid"), pre.get("resourceVersion"), dry)

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        obj, _ = await self.registry.delete(t.res, t.namespace, t.name, opts)
        neg = negotiate(request.headers.get("Accept", ""))
        return self._respond(neg, obj, 200)

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        page = await self.registry.list(t.res, t.namespace, self._matcher(request, t.res))
        deleted = []
        for obj in page.items:
            try:
                out, _ = await self.registry.delete(t.res, obj["metadata"].get("namespace", ""),
                                                    obj["metadata"]["name"], opts)
                deleted.append(out)
            except APIError as e:
                if e.code != 404:
                    raise
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(
                                  self.registry.backend.current_revision())},
                              "items": deleted})


def scale_of(obj: dict) -> dict:
    """The autoscaling/v1 Scale view of a Deployment or ReplicaSet."""
    meta = obj["metadata"]
    sel = (obj.get("spec") or {}).get("selector") or {}
    return {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                          "creationTimestamp") if k in meta},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                   "selector": label_selector_string(sel)},
    }


def label_selector_string(sel: dict) -> str:
    """metav1.FormatLabelSelector: requirements sorted by key, in selector syntax."""
    reqs: list[tuple[str, str]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, f"{k}={v}"))
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key", ""), e.get("operator", ""), sorted(e.get("values") or [])
        text = {"In": f"{k} in ({','.join(vals)})", "NotIn": f"{k} notin ({','.join(vals)})",
                "Exists": k, "DoesNotExist": f"!{k}"}.get(op, "")
        reqs.append((k, text))
    return ",".join(t for _, t in sorted(reqs))
