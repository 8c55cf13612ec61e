"""The svcnet API server: Kubernetes REST over HTTPS on top of the registry.

Theory of operation
- One asyncio process (uvloop) serves HTTPS with aiohttp. Requests are authenticated by bearer
  token (health and version endpoints are anonymous, as in Kubernetes), routed by path onto a
  resource (api/request.py), and handled by the REST verbs in api/handlers.py.
- All writes go through the registry into one backend (SQLite by default). The backend is used
  only from this event loop, so requests are serialised at the store and never race each other.
- Every error leaves as a `metav1.Status` (api/errors.py); an unexpected exception is logged and
  answered with a 500 Status, never a traceback.
- Background tasks: the namespace lifecycle (deleting a namespace deletes what it holds), and
  compaction of the revision log (history older than ~5 minutes is dropped).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import hmac
import logging
import ssl
import time

import orjson
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from svcnet.api import discovery, errors
from svcnet.api.errors import APIError
from svcnet.api.handlers import ResourceHandlers, json_response
from svcnet.api.request import parse_path, query_bool
from svcnet.api.resources import BY_KIND, RESOURCES
from svcnet.registry.store import Registry

log = logging.getLogger("svcnet.api")

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.4-svcnet",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-27T00:00:00Z",
    "goVersion": "go1.23.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

ANONYMOUS_PATHS = {"/healthz", "/livez", "/readyz", "/version"}
BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class APIConfig:
    token: str
    advertise_address: str = "127.0.0.1"
    port: int = 6443
    compaction_interval: float = 60.0
    compaction_retention: float = 300.0
    trim_interval: float = 2.0
    logs_dir: Path | None = None  # where this server's own node agent keeps pod logs


@dataclass
class APIServer:
    """The aiohttp application and its background tasks."""

    registry: Registry
    config: APIConfig
    tasks: list[asyncio.Task] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.handlers = ResourceHandlers(self.registry, self.config.logs_dir)
        self._token = self.config.token.encode()

    # ---- application ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_and_auth], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _errors_and_auth(self, request: web.Request, handler):
        try:
            if request.path not in ANONYMOUS_PATHS and not self._authenticated(request):
                raise errors.unauthorized()
            return await handler(request)
        except APIError as e:
            return json_response(e.status(), e.code)
        except asyncio.CancelledError:
            raise
        except web.HTTPException as e:
            return json_response(APIError(e.status, e.reason.replace(" ", ""), e.text or e.reason).status(),
                                 e.status)
        except Exception as e:  # the last line of defence: log it, answer a Status
            log.exception("internal error serving %s %s", request.method, request.path_qs)
            err = errors.internal(f"{type(e).__name__}: {e}")
            return json_response(err.status(), 500)

    def _authenticated(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        return hmac.compare_digest(auth[7:].strip().encode(), self._token)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        method = request.method
        if method in ("GET", "HEAD"):
            fixed = self._non_resource(request, path)
            if fixed is not None:
                return fixed
            if path.startswith("/openapi/"):
                return self._openapi(request, path)
        t = parse_path(path)
        if t is None:
            raise errors.resource_not_found()
        h = self.handlers
        collection = not t.name
        if collection:
            if t.subresource:
                raise errors.resource_not_found()
            if method == "GET":
                self._require_verb(t, "watch" if query_bool(request.query.get("watch")) else "list")
                return await h.list(request, t)
            if method == "POST":
                self._require_verb(t, "create")
                return await h.create(request, t)
            if method == "DELETE":
                self._require_verb(t, "deletecollection")
                return await h.delete_collection(request, t)
            raise errors.method_not_allowed()
        if t.res.namespaced and not t.namespace:
            raise errors.resource_not_found()
        if t.subresource == "exec":  # a connect verb: GET (WebSocket) or POST (SPDY, refused)
            if method not in ("GET", "POST"):
                raise errors.method_not_allowed()
            from svcnet.api.remotecommand import serve_exec
            return await serve_exec(request, t, self.registry, self.config.logs_dir)
        if method == "GET":
            return await h.get(request, t)
        if method == "PUT":
            if t.subresource == "log":
                raise errors.method_not_allowed()
            return await h.update(request, t)
        if method == "PATCH":
            if t.subresource == "log":
                raise errors.method_not_allowed()
            return await h.patch(request, t)
        if method == "DELETE" and not t.subresource:
            return await h.delete(request, t)
        if method == "POST" and t.subresource == "binding":
            return await h.bind(request, t)
        raise errors.method_not_allowed()

    @staticmethod
    def _require_verb(t, verb: str) -> None:
        if verb not in t.res.verbs:
            raise errors.method_not_allowed()

    def _non_resource(self, request: web.Request, path: str) -> web.StreamResponse | None:
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(VERSION)
        accept = request.headers.get("Accept", "")
        if path in ("/api", "/apis"):
            agg = discovery.wants_aggregated(accept)
            if agg:
                body = discovery.aggregated(path == "/api", agg)
                return web.Response(body=orjson.dumps(body),
                                    headers={"Content-Type": agg, "Vary": "Accept"})
            if path == "/api":
                return json_response(discovery.api_versions(
                    f"{self.config.advertise_address}:{self.config.port}"))
            return json_response(discovery.api_group_list())
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            groups = {r.group for r in RESOURCES}
            if parts[1] in groups and parts[1]:
                return json_response(discovery.api_group(parts[1]))
            return None
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            body = discovery.api_resource_list(group, version)
            if body is None:
                raise errors.resource_not_found()
            return json_response(body)
        return None

    def _openapi(self, request: web.Request, path: str) -> web.Response:
        from svcnet.api import openapi

        if path == "/openapi/v2":
            return self._openapi_v2(request)
        if path == "/openapi/v3":
            return json_response(openapi.openapi_v3_index(""))
        if path.startswith("/openapi/v3/"):
            doc = openapi.openapi_v3_document(path[len("/openapi/v3/"):])
            if doc is not None:
                headers = {"Cache-Control": "public, immutable" if request.query.get("hash")
                           else "no-cache, private"}
                return web.Response(body=doc, content_type="application/json", headers=headers)
        raise errors.resource_not_found()

    @staticmethod
    def _openapi_v2(request: web.Request) -> web.Response:
        from svcnet.api import openapi_v2

        offer = openapi_v2.negotiate(request.headers.get("Accept", ""))
        if offer is None:
            raise errors.not_acceptable("only application/json and application/"
                                        "com.github.proto-openapi.spec.v2.v1.0+protobuf are served")
        content_type, body = offer
        headers = {"Etag": openapi_v2.etag(), "Vary": "Accept", "Content-Type": content_type}
        if openapi_v2.etag() in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body(), headers=headers)

    # ---- background tasks ----------------------------------------------------------------

    async def bootstrap(self) -> None:
        ns = BY_KIND["Namespace"]
        for name in BOOTSTRAP_NAMESPACES:
            if await self.registry.try_get(ns, "", name) is None:
                try:
                    await self.registry.create(ns, {"metadata": {"name": name}}, "kube-apiserver")
                except APIError as e:
                    if e.reason != "AlreadyExists":
                        raise

    def start_background(self) -> None:
        self.tasks.append(asyncio.create_task(self._namespace_lifecycle()))
        self.tasks.append(asyncio.create_task(self._compaction()))
        self.tasks.append(asyncio.create_task(self._trim_memory()))

    async def _trim_memory(self) -> None:
        """Give freed heap back to the OS: a LIST of thousands of objects decodes them all at
        once, and glibc keeps such peaks mapped until asked (malloc_trim)."""
        try:
            trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            return
        while True:
            await asyncio.sleep(self.config.trim_interval)
            trim(0)

    async def stop_background(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _namespace_lifecycle(self) -> None:
        """Finish deleting namespaces: remove their content, then the namespace itself."""
        ns_res = BY_KIND["Namespace"]
        while True:
            try:
                page = await self.registry.list(ns_res)
                start = int(page.resource_version)
                for ns in page.items:
                    if ns["metadata"].get("deletionTimestamp"):
                        await self._finish_namespace(ns["metadata"]["name"])
                async for kind, ns in self.registry.watch(ns_res, "", start):
                    if kind != "DELETED" and ns["metadata"].get("deletionTimestamp"):
                        await self._finish_namespace(ns["metadata"]["name"])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("namespace lifecycle; retrying")
                await asyncio.sleep(1)

    async def _finish_namespace(self, name: str) -> None:
        from svcnet.registry.store import DeleteOptions

        ns_res = BY_KIND["Namespace"]
        for _ in range(100):
            remaining = 0
            for res in RESOURCES:
                if not res.namespaced:
                    continue
                page = await self.registry.list(res, name)
                for obj in page.items:
                    remaining += 1
                    try:
                        await self.registry.delete(res, name, obj["metadata"]["name"],
                                                   DeleteOptions(grace_period_seconds=0))
                    except APIError as e:
                        if e.code != 404:
                            raise
            if remaining == 0:
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("namespace %s still has content; will retry", name)
            return

        def drop_finalizers(ns: dict) -> dict:
            ns.setdefault("spec", {})["finalizers"] = []
            ns["metadata"]["finalizers"] = [f for f in ns["metadata"].get("finalizers", [])
                                            if f != "kubernetes"]
            return ns

        try:
            await self.registry.guaranteed_update(ns_res, "", name, drop_finalizers)
            ns = await self.registry.try_get(ns_res, "", name)
            if ns is not None and not ns["metadata"].get("finalizers"):
                await self.registry.delete(ns_res, "", name)
        except APIError as e:
            if e.code != 404:
                raise

    async def _compaction(self) -> None:
        """Compact to the revision the store had `compaction_retention` seconds ago."""
        seen: collections.deque[tuple[float, int]] = collections.deque()
        backend = self.registry.backend
        while True:
            await asyncio.sleep(self.config.compaction_interval)
            now = time.monotonic()
            seen.append((now, backend.current_revision()))
            target = 0
            while seen and seen[0][0] <= now - self.config.compaction_retention:
                target = seen.popleft()[1]
            if target > backend.compacted_revision():
                try:
                    await backend.compact(target)
                except Exception:
                    log.exception("compaction to %d failed", target)


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
