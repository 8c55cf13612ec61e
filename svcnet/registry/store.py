"""The generic registry: Kubernetes object semantics on top of a revisioned key-value backend.

Theory of operation
- Objects are stored as JSON under `/registry/<group>/<plural>/[<namespace>/]<name>`, without
  `metadata.resourceVersion`; on every read the registry fills it in from the key's
  `mod_revision`. So resourceVersion is the store revision, and a write is conditional on the
  revision the caller read (optimistic concurrency, 409 Conflict when stale).
- Every write goes through the kind's strategy (registry/strategy.py): prepare, default,
  validate, then one backend transaction. Extra writes that must commit together with the object
  (allocations, from issue 3 on) join that transaction through `WriteHooks`.
- Deletion is graceful as in Kubernetes: an object with finalizers, or a scheduled pod with a
  grace period, first gets `deletionTimestamp`; it is removed when the last finalizer goes (an
  update with no finalizers left and deletionGracePeriodSeconds 0) or on a final delete.
- Lists read at one revision, so paginated lists are consistent; the continue token carries
  that revision and the last key. Watches replay the backend log from a revision and translate
  key events into ADDED/MODIFIED/DELETED, applying selectors to both the old and new object as
  the apiserver's watch cache does.
"""

from __future__ import annotations

import base64
import datetime
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import orjson

from svcnet.api import apply, errors
from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND, Resource
from svcnet.jsonutil import clone
from svcnet.registry import service as _service  # noqa: F401  (registers the Service rules)
from svcnet.registry import workloads as _workloads  # noqa: F401  (Pods, Nodes, Deployments, ...)
from svcnet.registry import strategy
from svcnet.store.backend import (Backend, Compacted, Create, Delete, FutureRevision, KeyExists,
                                  KeyNotFound, KeyValue, Op, RevisionMismatch, Update)

NAMESPACE = BY_KIND["Namespace"]


def now_rfc3339(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc3339_after(seconds: int) -> str:
    return now_rfc3339(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds))


def same_instant(a: object, b: object) -> bool:
    """Two RFC 3339 timestamps naming the same second ("...Z" and "...+00:00" alike)."""
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    try:
        pa = datetime.datetime.fromisoformat(a.replace("Z", "+00:00"))
        pb = datetime.datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return False
    return pa == pb


_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def generate_name(base: str) -> str:
    """SimpleNameGenerator: base (cut to 58 characters) + 5 random characters."""
    return base[:58] + "".join(random.choice(_GEN_ALPHABET) for _ in range(5))


def key_for(res: Resource, namespace: str, name: str) -> str:
    return prefix_for(res, namespace) + name


def prefix_for(res: Resource, namespace: str = "") -> str:
    base = f"/registry/{res.group or 'core'}/{res.plural}/"
    if res.namespaced and namespace:
        return f"{base}{namespace}/"
    return base


def decode(kv: KeyValue) -> dict:
    obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(kv.mod_revision)
    return obj


def encode(obj: dict) -> bytes:
    meta = obj["metadata"]
    rv = meta.pop("resourceVersion", None)
    try:
        # orjson's result keeps a ~4 KiB buffer however small the output; stored values live
        # in the backend's cache, so keep an exact-size copy.
        return bytes(memoryview(orjson.dumps(obj)))
    finally:
        if rv is not None:
            meta["resourceVersion"] = rv


def parse_rv(value: str | None, what: str = "resourceVersion") -> int:
    """0 for unset/"0"; raises 400 for a non-numeric version."""
    if not value:
        return 0
    try:
        n = int(value)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise errors.bad_request(f'invalid {what} "{value}"') from None


@dataclass
class ListPage:
    items: list[dict]
    resource_version: str
    continue_token: str = ""
    remaining: int | None = None


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    preconditions_uid: str | None = None
    preconditions_rv: str | None = None
    dry_run: bool = False


Matcher = Callable[[dict], bool]


@dataclass
class WriteHooks:
    """Extra ops that commit atomically with an object's create/update/delete.

    Each hook returns (ops, on_commit): backend ops appended to the transaction and a callback
    run after it commits. A hook may raise APIError to refuse the write."""

    on_create: list[Callable[[Resource, dict], Awaitable[list[Op]]]] = field(default_factory=list)
    on_update: list[Callable[[Resource, dict, dict], Awaitable[list[Op]]]] = field(default_factory=list)
    on_delete: list[Callable[[Resource, dict], Awaitable[list[Op]]]] = field(default_factory=list)


def _managed_fields(old: dict | None, new: dict, manager: str, kind: str, subresource: str = "") -> dict:
    return apply.update_managed_fields(old, new, manager, kind, now_rfc3339(), subresource)


ORPHAN, FOREGROUND = "orphan", "foregroundDeletion"


def gc_finalizers(current: list[str], policy: str | None) -> list[str]:
    """The finalizers a delete leaves on the object for the garbage collector to act on
    (Orphan -> "orphan", Foreground -> "foregroundDeletion"; Background adds none)."""
    out = list(current)
    want = {"Orphan": ORPHAN, "Foreground": FOREGROUND}.get(policy or "")
    if want is None:
        return out
    drop = FOREGROUND if want == ORPHAN else ORPHAN
    out = [f for f in out if f != drop]
    if want not in out:
        out.append(want)
    return out


def _spec_finalizers(res: Resource, obj: dict) -> list:
    """A Namespace's own finalizers (spec.finalizers): its content must go before it does."""
    return (obj.get("spec") or {}).get("finalizers") or [] if res.kind == "Namespace" else []


def _raced(res: Resource, name: str, key: str) -> APIError:
    """A hook's key (an allocation) changed between planning and commit: nothing was written."""
    return errors.conflict(res.plural, res.group, name,
                           f"a concurrent change to {key.rsplit('/', 2)[-2]} raced with this "
                           "request; please try again")


class Registry:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.hooks: dict[str, WriteHooks] = {}

    def hooks_for(self, kind: str) -> WriteHooks:
        return self.hooks.setdefault(kind, WriteHooks())

    # ---- reads ---------------------------------------------------------------------------

    async def get(self, res: Resource, namespace: str, name: str) -> dict:
        kv = await self.backend.get(key_for(res, namespace, name))
        if kv is None:
            raise errors.not_found(res.plural, res.group, name)
        return decode(kv)

    async def try_get(self, res: Resource, namespace: str, name: str) -> dict | None:
        kv = await self.backend.get(key_for(res, namespace, name))
        return decode(kv) if kv else None

    async def list(self, res: Resource, namespace: str = "", match: Matcher | None = None,
                   limit: int = 0, continue_token: str = "", resource_version: str = "",
                   rv_match: str = "") -> ListPage:
        prefix = prefix_for(res, namespace)
        revision, start_after = 0, ""
        if continue_token:
            revision, start_after = self._parse_continue(continue_token, prefix)
        elif rv_match == "Exact":
            revision = parse_rv(resource_version)
            if revision == 0:
                raise errors.bad_request("resourceVersionMatch \"Exact\" requires a non-zero resourceVersion")
        elif resource_version and resource_version != "0":
            wanted = parse_rv(resource_version)
            if wanted > self.backend.current_revision():
                raise APIError(504, "Timeout", f"Too large resource version: {wanted}, current: "
                               f"{self.backend.current_revision()}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1})
        items: list[dict] = []
        last_key = ""
        more = False
        try:
            while True:
                want = (limit - len(items)) if limit else 0
                chunk = max(want, 64) if (limit and match) else want
                page = await self.backend.list(prefix, revision, start_after, chunk)
                revision = page.revision
                for kv in page.items:
                    start_after = kv.key
                    obj = decode(kv)
                    if match is None or match(obj):
                        items.append(obj)
                        last_key = kv.key
                        if limit and len(items) >= limit:
                            break
                if limit and len(items) >= limit:
                    more = page.more or kv is not page.items[-1]
                    if more and match is not None:
                        # Only say "more" when a matching object really follows.
                        more = await self._more_match(prefix, revision, last_key, match)
                    break
                if not page.more:
                    break
        except Compacted:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter, or use the continue token "
                "in this response to retrieve the remainder of the results. Continuing with the "
                "provided token results in an inconsistent list - objects that were created, "
                "modified, or deleted between the time the first chunk was returned and now may show "
                "up in the list." if continue_token else
                f"too old resource version: {resource_version} ({self.backend.compacted_revision() + 1})")
        except FutureRevision:
            raise APIError(504, "Timeout", f"Too large resource version: {revision}, current: "
                           f"{self.backend.current_revision()}",
                           {"causes": [{"reason": "ResourceVersionTooLarge",
                                        "message": "Too large resource version"}],
                            "retryAfterSeconds": 1}) from None
        token = self._make_continue(revision, last_key) if more else ""
        return ListPage(items, str(revision), token)

    async def _more_match(self, prefix: str, revision: int, after: str, match: Matcher) -> bool:
        while True:
            page = await self.backend.list(prefix, revision, after, 256)
            for kv in page.items:
                if match(decode(kv)):
                    return True
                after = kv.key
            if not page.more:
                return False

    @staticmethod
    def _make_continue(revision: int, last_key: str) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key + "\x00"})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _parse_continue(token: str, prefix: str) -> tuple[int, str]:
        try:
            padded = token + "=" * (-len(token) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded))
            rv, start = int(data["rv"]), str(data["start"])
            if data.get("v") != "meta.k8s.io/v1" or rv <= 0:
                raise ValueError
        except Exception:
            raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)") from None
        start = start.rstrip("\x00")
        if not start.startswith(prefix):
            raise errors.bad_request("continue key is not valid: continue key is not under the list prefix")
        return rv, start

    # ---- writes --------------------------------------------------------------------------

    async def _check_namespace(self, res: Resource, obj: dict) -> None:
        if not res.namespaced:
            return
        ns = obj["metadata"]["namespace"]
        nso = await self.try_get(NAMESPACE, "", ns)
        if nso is None:
            raise errors.not_found("namespaces", "", ns)
        if nso["metadata"].get("deletionTimestamp"):
            raise APIError(403, "Forbidden",
                           f'{res.plural if not res.group else res.plural + "." + res.group} '
                           f'"{obj["metadata"].get("name", "")}" is forbidden: unable to create new '
                           f'content in namespace {ns} because it is being terminated',
                           {"name": obj["metadata"].get("name", ""), "group": res.group,
                            "kind": res.plural,
                            "causes": [{"reason": "NamespaceTerminating",
                                        "message": f"namespace {ns} is being terminated",
                                        "field": "metadata.namespace"}]})

    async def create(self, res: Resource, obj: dict, manager: str = "", dry_run: bool = False) -> dict:
        """Create `obj` (metadata.namespace already set for namespaced kinds)."""
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        for f in ("uid", "resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds",
                  "selfLink"):
            meta.pop(f, None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = generate_name(meta["generateName"])
        strategy.prepare_for_create(res, obj)
        errs = strategy.validate(res, obj)
        if errs:
            raise errors.invalid(res.kind, res.group, meta.get("name", ""), errs)
        await self._check_namespace(res, obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if manager:
            obj = _managed_fields(None, obj, manager, res.kind)
            meta = obj["metadata"]
        if dry_run:  # everything a real create checks, short of writing
            if await self.backend.get(key_for(res, meta.get("namespace", ""), meta["name"])):
                raise errors.already_exists(res.plural, res.group, meta["name"])
            return obj
        # Hooks run first: they may fill in allocated values (clusterIP, nodePorts) and add
        # their keys to the same transaction.
        extra: list[Op] = []
        for hook in self.hooks_for(res.kind).on_create:
            extra += await hook(res, obj)
        ops: list[Op] = [Create(key_for(res, meta.get("namespace", ""), meta["name"]), encode(obj))]
        ops += extra
        try:
            kvs = await self.backend.txn(ops)
        except KeyExists as e:
            if e.key == ops[0].key:
                raise errors.already_exists(res.plural, res.group, meta["name"]) from None
            raise _raced(res, meta["name"], e.key) from None
        meta["resourceVersion"] = str(kvs[0].mod_revision)
        return obj

    async def update(self, res: Resource, namespace: str, name: str, obj: dict,
                     subresource: str = "", manager: str = "", dry_run: bool = False,
                     old: dict | None = None) -> dict:
        """Replace an object (PUT semantics). A resourceVersion in `obj` is a precondition."""
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if old is None:
            old = await self.get(res, namespace, name)
        want_rv = meta.get("resourceVersion") or ""
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, res.group, name)
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        if not meta.get("uid"):
            meta["uid"] = old["metadata"].get("uid")
        if not meta.get("creationTimestamp") or same_instant(meta["creationTimestamp"],
                                                             old["metadata"].get("creationTimestamp")):
            meta["creationTimestamp"] = old["metadata"].get("creationTimestamp")
        # deletionTimestamp and its grace period are owned by the server.
        for f in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(f, None)
            if f in old["metadata"]:
                meta[f] = old["metadata"][f]
        if subresource == "status":
            strategy.prepare_for_status_update(res, obj, old)
            meta = obj["metadata"]
        else:
            strategy.prepare_for_update(res, obj, old)
        errs = strategy.validate_update(res, obj, old)
        if errs:
            raise errors.invalid(res.kind, res.group, name, errs)
        if manager:
            obj = _managed_fields(old, obj, manager, res.kind, subresource)
            meta = obj["metadata"]
        old_rv = int(old["metadata"]["resourceVersion"])
        if dry_run:
            return obj
        if self._unchanged(obj, old):
            return old
        key = key_for(res, namespace, name)
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and \
                not meta.get("deletionGracePeriodSeconds") and not _spec_finalizers(res, obj):
            ops: list[Op] = [Delete(key, old_rv)]
            for hook in self.hooks_for(res.kind).on_delete:
                ops += await hook(res, old)
        else:
            extra = []
            for hook in self.hooks_for(res.kind).on_update:
                extra += await hook(res, obj, old)
            ops = [Update(key, encode(obj), old_rv)] + extra
        try:
            kvs = await self.backend.txn(ops)
        except RevisionMismatch as e:
            if e.key == key:
                raise errors.conflict(res.plural, res.group, name) from None
            raise _raced(res, name, e.key) from None
        except KeyNotFound as e:
            if e.key == key:
                raise errors.not_found(res.plural, res.group, name) from None
            raise _raced(res, name, e.key) from None
        except KeyExists as e:
            raise _raced(res, name, e.key) from None
        meta["resourceVersion"] = str(kvs[0].mod_revision)
        return obj

    @staticmethod
    def _unchanged(new: dict, old: dict) -> bool:
        """No-op writes keep the resourceVersion (as the apiserver skips the etcd write)."""
        a = dict(new, metadata={k: v for k, v in new["metadata"].items()
                                if k not in ("resourceVersion", "managedFields")})
        b = dict(old, metadata={k: v for k, v in old["metadata"].items()
                                if k not in ("resourceVersion", "managedFields")})
        return a == b

    async def guaranteed_update(self, res: Resource, namespace: str, name: str,
                                mutate: Callable[[dict], Awaitable[dict] | dict],
                                subresource: str = "", manager: str = "", dry_run: bool = False,
                                retries: int = 5) -> dict:
        """Read-modify-write with retries on conflict (PATCH semantics). `mutate` gets the
        current object and returns the desired one; a resourceVersion it sets is a
        precondition and is not retried."""
        for attempt in range(retries + 1):
            old = await self.get(res, namespace, name)
            desired = mutate(clone(old))
            if hasattr(desired, "__await__"):
                desired = await desired
            precondition = desired.get("metadata", {}).get("resourceVersion")
            explicit = precondition and precondition != old["metadata"]["resourceVersion"]
            if not explicit:
                desired.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
            try:
                return await self.update(res, namespace, name, desired, subresource, manager,
                                         dry_run, old=old)
            except APIError as e:
                if e.reason != "Conflict" or explicit or attempt == retries:
                    raise
        raise AssertionError("unreachable")

    async def bind(self, res: Resource, namespace: str, name: str, node: str) -> dict:
        """The pods/binding subresource: set spec.nodeName once, with PodScheduled=True."""
        for _ in range(5):
            pod = await self.get(res, namespace, name)
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict(res.plural, res.group, name, "pod is being deleted")
            current = (pod.get("spec") or {}).get("nodeName")
            if current:
                raise errors.conflict(res.plural, res.group, name,
                                      f'pod {name} is already assigned to node "{current}"')
            pod["spec"]["nodeName"] = node
            conds = [c for c in (pod.setdefault("status", {}).get("conditions") or [])
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            pod["status"]["conditions"] = conds
            rv = int(pod["metadata"]["resourceVersion"])
            try:
                kvs = await self.backend.txn([Update(key_for(res, namespace, name), encode(pod), rv)])
            except RevisionMismatch:
                continue
            pod["metadata"]["resourceVersion"] = str(kvs[0].mod_revision)
            return pod
        raise errors.conflict(res.plural, res.group, name)

    async def delete(self, res: Resource, namespace: str, name: str,
                     opts: DeleteOptions | None = None) -> tuple[dict, bool]:
        """Delete gracefully. Returns (object, deleted_now)."""
        opts = opts or DeleteOptions()
        for _ in range(10):
            old = await self.get(res, namespace, name)
            meta = old["metadata"]
            if opts.preconditions_uid and opts.preconditions_uid != meta.get("uid"):
                raise errors.conflict(res.plural, res.group, name,
                                      f"Precondition failed: UID in precondition: "
                                      f"{opts.preconditions_uid}, UID in object meta: {meta.get('uid')}")
            if opts.preconditions_rv and opts.preconditions_rv != meta["resourceVersion"]:
                raise errors.conflict(res.plural, res.group, name,
                                      f"Precondition failed: ResourceVersion in precondition: "
                                      f"{opts.preconditions_rv}, ResourceVersion in object meta: "
                                      f"{meta['resourceVersion']}")
            grace = self._grace_period(res, old, opts)
            rv = int(meta["resourceVersion"])
            key = key_for(res, namespace, name)
            finalizers = gc_finalizers(meta.get("finalizers") or [], opts.propagation_policy)
            if finalizers or grace > 0 or _spec_finalizers(res, old):
                new = clone(old)
                nm = new["metadata"]
                changed = finalizers != (meta.get("finalizers") or [])
                if changed:
                    nm["finalizers"] = finalizers
                # deletionTimestamp is set once; a later delete may only shorten the grace.
                sooner = not nm.get("deletionTimestamp") or \
                    grace < (nm.get("deletionGracePeriodSeconds") or 0)
                if sooner:
                    nm["deletionTimestamp"] = _rfc3339_after(grace)
                    nm["deletionGracePeriodSeconds"] = grace
                    if res.kind == "Namespace":
                        new.setdefault("status", {})["phase"] = "Terminating"
                elif not changed:
                    return old, False
                if opts.dry_run:
                    return new, False
                try:
                    kvs = await self.backend.txn([Update(key, encode(new), rv)])
                except RevisionMismatch:
                    continue
                nm["resourceVersion"] = str(kvs[0].mod_revision)
                return new, False
            if opts.dry_run:
                return old, True
            ops: list[Op] = [Delete(key, rv)]
            for hook in self.hooks_for(res.kind).on_delete:
                ops += await hook(res, old)
            try:
                await self.backend.txn(ops)
            except RevisionMismatch:
                continue
            except KeyNotFound:
                raise errors.not_found(res.plural, res.group, name) from None
            return old, True
        raise errors.conflict(res.plural, res.group, name)

    @staticmethod
    def _grace_period(res: Resource, obj: dict, opts: DeleteOptions) -> int:
        if res.kind == "Namespace":
            return 0
        if res.kind != "Pod":
            return 0
        spec, status = obj.get("spec", {}), obj.get("status", {})
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0  # never scheduled or already done: nothing to wait for
        if opts.grace_period_seconds is not None:
            return max(0, opts.grace_period_seconds)
        return int(spec.get("terminationGracePeriodSeconds", 30) or 0)

    # ---- watch ---------------------------------------------------------------------------

    async def watch(self, res: Resource, namespace: str, after_revision: int,
                    match: Matcher | None = None) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) events after `after_revision`; raises Compacted (410 upstream)."""
        prefix = prefix_for(res, namespace)
        async for ev in self.backend.watch(prefix, after_revision):
            obj = decode(ev.kv)
            if ev.type == "DELETE":
                if match is None or match(obj):
                    yield "DELETED", obj
                continue
            new_ok = match is None or match(obj)
            if ev.prev is None:
                if new_ok:
                    yield "ADDED", obj
                continue
            if match is None:
                yield "MODIFIED", obj
                continue
            old_ok = match(decode(ev.prev))
            if new_ok and old_ok:
                yield "MODIFIED", obj
            elif new_ok:
                yield "ADDED", obj
            elif old_ok:
                yield "DELETED", obj
