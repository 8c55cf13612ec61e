"""A small asyncio Kubernetes API client and informer, for svcnet's controllers and agent.

Everything outside the API server talks to it through this module, over HTTPS with a bearer
token, exactly as any other client would: controllers and agents never touch the store.

- `Client`: get/list/create/update/update_status/patch/delete and `watch()` (a stream of
  (type, object) events) on resources named by their `svcnet.api.resources.Resource`.
- `Informer`: list + watch with a local cache, as client-go's (without managedFields, which no
  controller reads): it lists, then watches from the list's resourceVersion; on 410 Expired or a broken stream it re-lists and emits the
  differences, so handlers see every change at least once and the cache converges.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import yaml

from svcnet.api.errors import APIError
from svcnet.api.resources import Resource

log = logging.getLogger("svcnet.client")


@dataclass(frozen=True)
class Config:
    server: str  # https://host:port
    token: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM

    @classmethod
    def from_kubeconfig(cls, path: str | Path) -> "Config":
        import base64

        cfg = yaml.safe_load(Path(path).read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        data = cluster.get("certificate-authority-data")
        return cls(cluster["server"], user.get("token", ""), cluster.get("certificate-authority"),
                   base64.b64decode(data).decode() if data else None)


def _path(res: Resource, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = f"/api/{res.version}" if not res.group else f"/apis/{res.group}/{res.version}"
    if res.namespaced and namespace:
        base += f"/namespaces/{quote(namespace)}"
    base += f"/{res.plural}"
    if name:
        base += f"/{quote(name)}"
    if sub:
        base += f"/{sub}"
    return base


class Client:
    def __init__(self, config: Config, user_agent: str = "svcnet"):
        self.config = config
        self._ssl = (ssl.create_default_context(cafile=config.ca_file, cadata=config.ca_data)
                     if config.ca_file or config.ca_data else None)
        self._headers = {"Authorization": f"Bearer {config.token}", "User-Agent": user_agent,
                         "Accept": "application/json"}
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(self, method: str, path: str, body=None, params: dict | None = None,
                      content_type: str = "application/json", accept: str | None = None) -> dict:
        s = await self.session()
        data = orjson.dumps(body) if body is not None else None
        url = self.config.server + path + ("?" + urlencode(params) if params else "")
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        async with s.request(method, url, data=data, headers=headers) as r:
            payload = await r.read()
            try:
                obj = orjson.loads(payload) if payload else {}
            except orjson.JSONDecodeError:
                obj = {"message": payload.decode(errors="replace")}
            if r.status >= 300:
                raise APIError(r.status, obj.get("reason", ""), obj.get("message", ""),
                               obj.get("details") or {})
            return obj

    # ---- verbs -----------------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str, name: str, sub: str = "") -> dict:
        return await self.request("GET", _path(res, namespace, name, sub))

    async def list(self, res: Resource, namespace: str = "", accept: str | None = None,
                   **params) -> dict:
        return await self.request("GET", _path(res, namespace), params=params or None,
                                  accept=accept)

    async def create(self, res: Resource, obj: dict, manager: str = "svcnet") -> dict:
        ns = obj.get("metadata", {}).get("namespace", "")
        return await self.request("POST", _path(res, ns), obj, {"fieldManager": manager})

    async def update(self, res: Resource, obj: dict, sub: str = "", manager: str = "svcnet") -> dict:
        m = obj["metadata"]
        return await self.request("PUT", _path(res, m.get("namespace", ""), m["name"], sub), obj,
                                  {"fieldManager": manager})

    async def update_status(self, res: Resource, obj: dict, manager: str = "svcnet") -> dict:
        return await self.update(res, obj, "status", manager)

    async def patch(self, res: Resource, namespace: str, name: str, patch, sub: str = "",
                    patch_type: str = "application/merge-patch+json",
                    manager: str = "svcnet") -> dict:
        return await self.request("PATCH", _path(res, namespace, name, sub), patch,
                                  {"fieldManager": manager}, patch_type)

    async def delete(self, res: Resource, namespace: str, name: str,
                     options: dict | None = None) -> dict:
        """DELETE with a DeleteOptions body (propagationPolicy, preconditions, ...)."""
        return await self.request("DELETE", _path(res, namespace, name), options)

    async def watch(self, res: Resource, namespace: str = "", resource_version: str = "",
                    timeout_seconds: int = 300, accept: str | None = None,
                    **params) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) events; an ERROR event is raised as APIError."""
        s = await self.session()
        q = {"watch": "true", "timeoutSeconds": str(timeout_seconds),
             "allowWatchBookmarks": "true", **params}
        if resource_version:
            q["resourceVersion"] = resource_version
        url = self.config.server + _path(res, namespace) + "?" + urlencode(q)
        async with s.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=timeout_seconds + 30),
                         headers={"Accept": accept} if accept else None) as r:
            if r.status >= 300:
                obj = orjson.loads(await r.read() or b"{}")
                raise APIError(r.status, obj.get("reason", ""), obj.get("message", ""))
            async for line in r.content:
                if not line.strip():
                    continue
                ev = orjson.loads(line)
                if ev["type"] == "ERROR":
                    st = ev["object"]
                    raise APIError(st.get("code", 500), st.get("reason", ""), st.get("message", ""))
                yield ev["type"], ev["object"]


Handler = Callable[[str, dict | None, dict | None], Awaitable[None] | None]


def _slim(obj: dict) -> None:
    """Drop what no controller reads from a cached object: managedFields are more than half of
    a decoded pod. (A later PUT of the object without them keeps the stored ones.)"""
    obj.get("metadata", {}).pop("managedFields", None)


def object_key(obj: dict) -> str:
    m = obj["metadata"]
    return f"{m.get('namespace', '')}/{m['name']}"


class Informer:
    """A cache of one resource kept current by list+watch; calls `handler(kind, old, new)` with
    kind "ADDED", "MODIFIED" or "DELETED" for every change it sees."""

    METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

    def __init__(self, client: Client, res: Resource, namespace: str = "",
                 metadata_only: bool = False, **params):
        """`metadata_only`: cache only metadata (PartialObjectMetadata), as client-go's
        metadata informers do, for controllers that never read spec or status."""
        self.client = client
        self.res = res
        self.metadata_only = metadata_only
        self.namespace = namespace
        self.params = params
        self.cache: dict[str, dict] = {}
        self.handlers: list[Handler] = []
        self.synced = asyncio.Event()
        self._task: asyncio.Task | None = None

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def get(self, namespace: str, name: str) -> dict | None:
        return self.cache.get(f"{namespace}/{name}")

    def items(self) -> list[dict]:
        return list(self.cache.values())

    def _normalize(self, obj: dict) -> None:
        _slim(obj)
        if self.metadata_only or "kind" not in obj:
            obj["kind"], obj["apiVersion"] = self.res.kind, self.res.api_version

    async def _emit(self, kind: str, old: dict | None, new: dict | None) -> None:
        for h in self.handlers:
            try:
                r = h(kind, old, new)
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                log.exception("informer handler for %s failed", self.res.plural)

    async def _relist(self) -> str:
        lst = await self.client.list(self.res, self.namespace,
                                     accept=self.METADATA_LIST if self.metadata_only else None,
                                     **self.params)
        fresh: dict[str, dict] = {}
        for item in lst.get("items", []):
            self._normalize(item)
            fresh[object_key(item)] = item
        old_cache, self.cache = self.cache, fresh
        for key, obj in fresh.items():
            prev = old_cache.get(key)
            if prev is None:
                await self._emit("ADDED", None, obj)
            elif prev["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                await self._emit("MODIFIED", prev, obj)
        for key, prev in old_cache.items():
            if key not in fresh:
                await self._emit("DELETED", prev, None)
        self.synced.set()
        return lst["metadata"]["resourceVersion"]

    async def _run(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    rv = await self._relist()
                async for kind, obj in self.client.watch(
                        self.res, self.namespace, rv,
                        accept=self.METADATA if self.metadata_only else None, **self.params):
                    rv = obj["metadata"].get("resourceVersion", rv)
                    if kind == "BOOKMARK":
                        continue
                    self._normalize(obj)
                    key = object_key(obj)
                    old = self.cache.get(key)
                    if kind == "DELETED":
                        self.cache.pop(key, None)
                        await self._emit("DELETED", old, None)
                    else:
                        self.cache[key] = obj
                        await self._emit("ADDED" if old is None else "MODIFIED", old, obj)
            except asyncio.CancelledError:
                raise
            except APIError as e:
                if e.code == 410:
                    rv = ""
                else:
                    log.warning("watch %s: %s; retrying", self.res.plural, e)
                    rv = ""
                    await asyncio.sleep(0.5)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                log.debug("watch %s broke: %s; resuming", self.res.plural, e)
                await asyncio.sleep(0.2)
