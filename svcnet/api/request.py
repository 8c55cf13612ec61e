"""Request parsing for the REST API: paths, bodies, content negotiation (thin I/O helpers).

`parse_path` maps a URL path onto (resource, namespace, name, subresource) the way
kube-apiserver's routes do; `read_body` enforces the 3 MiB request limit and decodes JSON or
YAML; `negotiate` reads the Accept header for the Table / metadata-only forms.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import yaml

from svcnet.api import errors, protobuf
from svcnet.api.resources import Resource, lookup

MAX_BODY = 3 * 1024 * 1024


@dataclass(frozen=True)
class Target:
    res: Resource
    namespace: str  # "" for cluster-scoped resources and all-namespaces collections
    name: str  # "" for a collection
    subresource: str  # "" for the main resource


def parse_path(path: str) -> Target | None:
    """None when the path names no served resource (404)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        return None
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = lookup(group, version, rest[2])
        if inner is not None and inner.namespaced:
            namespace, rest = rest[1], rest[2:]
    res = lookup(group, version, rest[0])
    if res is None or len(rest) > 3:
        return None
    if namespace and not res.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if sub and res.sub(sub) is None:
        return None
    return Target(res, namespace, name, sub)


async def read_raw(request) -> bytes:
    """The request body, refused with 413 past the limit (without reading it all)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.too_large(f"Request entity too large: limit is {MAX_BODY}")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.too_large(f"Request entity too large: limit is {MAX_BODY}")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_object(raw: bytes, content_type: str, kind: str, api_version: str) -> dict:
    """Decode a JSON or YAML body into a dict; errors as the apiserver's decoder reports."""
    mt = media_type(content_type or "application/json")
    if not raw.strip():
        raise errors.bad_request("the body of the request was empty")
    if protobuf.is_protobuf(mt):
        return protobuf.decode(raw)  # kubectl's typed clients (create service/namespace/...)
    try:
        if mt in ("application/yaml", "application/apply-patch+yaml", "text/yaml"):
            obj = yaml.safe_load(raw)
        elif mt in ("application/json", "", "*/*"):
            obj = orjson.loads(raw)
        else:
            raise errors.unsupported_media_type(mt, ["application/json", "application/yaml",
                                                     "application/vnd.kubernetes.protobuf"])
    except errors.APIError:
        raise
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else "invalid body"
        raise errors.bad_request(
            f"{kind} in version \"{api_version.split('/')[-1]}\" cannot be handled as a {kind}: {msg}")
    if not isinstance(obj, dict):
        raise errors.bad_request(
            f"{kind} in version \"{api_version.split('/')[-1]}\" cannot be handled as a {kind}: "
            f"json: cannot unmarshal {type(obj).__name__} into Go value of type struct")
    return obj


@dataclass(frozen=True)
class Negotiated:
    table: bool = False
    metadata_only: bool = False
    yaml: bool = False


def negotiate(accept: str) -> Negotiated:
    """Pick the response form: the first Accept entry we can serve wins."""
    for part in (accept or "").split(","):
        fields = [p.strip() for p in part.split(";")]
        mt = fields[0].lower()
        params = dict(p.split("=", 1) for p in fields[1:] if "=" in p)
        as_ = params.get("as")
        if as_ == "Table" and params.get("g") == "meta.k8s.io":
            return Negotiated(table=True)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and \
                params.get("g") == "meta.k8s.io":
            return Negotiated(metadata_only=True)
        if as_:
            continue
        if mt in ("application/yaml",):
            return Negotiated(yaml=True)
        if mt in ("application/json", "*/*", "application/*", ""):
            return Negotiated()
    return Negotiated()


def query_bool(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def query_int(query, name: str) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'invalid value for {name}: "{value}"') from None
