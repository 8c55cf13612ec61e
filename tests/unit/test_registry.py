"""The generic registry on the in-memory backend: object semantics without HTTP."""

from __future__ import annotations

import asyncio

import pytest

from svcnet.api.errors import APIError
from svcnet.api.resources import BY_KIND
from svcnet.registry.store import DeleteOptions, Registry
from svcnet.store.memory import MemoryBackend

SVC, NS, POD, CM = BY_KIND["Service"], BY_KIND["Namespace"], BY_KIND["Pod"], BY_KIND["ConfigMap"]


def run(coro):
    return asyncio.run(coro)


async def registry() -> Registry:
    backend = MemoryBackend()
    await backend.start()
    reg = Registry(backend)
    await reg.create(NS, {"metadata": {"name": "default"}})
    return reg


def svc(name: str, **labels) -> dict:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels},
            "spec": {"ports": [{"port": 80}]}}


def test_create_sets_system_fields_and_ignores_status():
    async def go():
        reg = await registry()
        body = svc("a")
        body["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
        body["metadata"]["uid"] = "forged"
        out = await reg.create(SVC, body)
        assert out["metadata"]["uid"] != "forged"
        assert out["status"] == {"loadBalancer": {}}
        assert out["kind"] == "Service" and out["apiVersion"] == "v1"
        got = await reg.get(SVC, "default", "a")
        assert got == out
    run(go())


def test_create_in_missing_namespace_is_404():
    async def go():
        reg = await registry()
        body = svc("a")
        body["metadata"]["namespace"] = "nope"
        with pytest.raises(APIError) as e:
            await reg.create(SVC, body)
        assert e.value.code == 404 and e.value.message == 'namespaces "nope" not found'
    run(go())


def test_update_conflicts_on_stale_resource_version():
    async def go():
        reg = await registry()
        a = await reg.create(SVC, svc("a"))
        b = dict(a, metadata=dict(a["metadata"], labels={"x": "1"}))
        await reg.update(SVC, "default", "a", b)
        with pytest.raises(APIError) as e:
            await reg.update(SVC, "default", "a", dict(a, metadata=dict(a["metadata"], labels={"y": "1"})))
        assert e.value.code == 409 and e.value.reason == "Conflict"
        assert (await reg.get(SVC, "default", "a"))["metadata"]["labels"] == {"x": "1"}
    run(go())


def test_noop_update_keeps_resource_version():
    async def go():
        reg = await registry()
        a = await reg.create(SVC, svc("a"))
        again = await reg.update(SVC, "default", "a", a)
        assert again["metadata"]["resourceVersion"] == a["metadata"]["resourceVersion"]
    run(go())


def test_status_update_changes_only_status_and_main_update_keeps_status():
    async def go():
        reg = await registry()
        a = await reg.create(SVC, svc("a"))
        changed = dict(a, spec={"ports": [{"port": 99}]},
                       status={"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}})
        out = await reg.update(SVC, "default", "a", changed, subresource="status")
        assert out["spec"] == a["spec"] and out["status"]["loadBalancer"]["ingress"]
        main = dict(out, status={}, metadata=dict(out["metadata"], labels={"l": "1"}))
        out2 = await reg.update(SVC, "default", "a", main)
        assert out2["status"] == out["status"] and out2["metadata"]["labels"] == {"l": "1"}
    run(go())


def test_finalizers_hold_deletion_until_removed():
    async def go():
        reg = await registry()
        body = {"metadata": {"name": "c", "namespace": "default", "finalizers": ["example.com/x"]},
                "data": {"k": "v"}}
        await reg.create(CM, body)
        obj, deleted = await reg.delete(CM, "default", "c")
        assert not deleted and obj["metadata"]["deletionTimestamp"]
        still = await reg.get(CM, "default", "c")
        still["metadata"]["finalizers"] = []
        await reg.update(CM, "default", "c", still)
        assert await reg.try_get(CM, "default", "c") is None
    run(go())


def test_scheduled_pod_deletion_is_graceful_unscheduled_is_immediate():
    async def go():
        reg = await registry()
        pod = {"metadata": {"name": "p", "namespace": "default"},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]}}
        await reg.create(POD, pod)
        obj, deleted = await reg.delete(POD, "default", "p")
        assert not deleted and obj["metadata"]["deletionGracePeriodSeconds"] == 30
        obj, deleted = await reg.delete(POD, "default", "p", DeleteOptions(grace_period_seconds=0))
        assert deleted
        pod2 = {"metadata": {"name": "q", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}
        await reg.create(POD, pod2)
        _, deleted = await reg.delete(POD, "default", "q")
        assert deleted
    run(go())


def test_paginated_list_reads_one_revision():
    async def go():
        reg = await registry()
        for i in range(5):
            await reg.create(SVC, svc(f"s{i}", app="a" if i % 2 else "b"))
        first = await reg.list(SVC, "default", limit=2)
        await reg.create(SVC, svc("s5"))
        await reg.delete(SVC, "default", "s3")
        names = [o["metadata"]["name"] for o in first.items]
        token = first.continue_token
        while token:
            page = await reg.list(SVC, "default", limit=2, continue_token=token)
            assert page.resource_version == first.resource_version
            names += [o["metadata"]["name"] for o in page.items]
            token = page.continue_token
        assert names == ["s0", "s1", "s2", "s3", "s4"]
        is_a = lambda o: o["metadata"]["labels"].get("app") == "a"  # noqa: E731
        only_a = await reg.list(SVC, "default", match=is_a, limit=1)
        assert [o["metadata"]["name"] for o in only_a.items] == ["s1"]
        assert only_a.continue_token == ""  # s3 is gone: no further match, no token
        await reg.create(SVC, svc("s6", app="a"))
        only_a = await reg.list(SVC, "default", match=is_a, limit=1)
        assert [o["metadata"]["name"] for o in only_a.items] == ["s1"] and only_a.continue_token
        rest = await reg.list(SVC, "default", match=is_a, limit=1, continue_token=only_a.continue_token)
        assert [o["metadata"]["name"] for o in rest.items] == ["s6"] and not rest.continue_token
    run(go())


def test_watch_translates_selector_transitions():
    async def go():
        reg = await registry()
        start = reg.backend.current_revision()
        a = await reg.create(SVC, svc("a", app="x"))
        a2 = await reg.update(SVC, "default", "a", dict(a, metadata=dict(a["metadata"], labels={"app": "y"})))
        await reg.update(SVC, "default", "a", dict(a2, metadata=dict(a2["metadata"], labels={"app": "x"})))
        await reg.delete(SVC, "default", "a")
        events = []
        match = lambda o: o["metadata"].get("labels", {}).get("app") == "x"  # noqa: E731

        async def collect():
            async for kind, obj in reg.watch(SVC, "default", start, match):
                events.append(kind)
                if len(events) == 4:
                    return

        await asyncio.wait_for(collect(), 5)
        assert events == ["ADDED", "DELETED", "ADDED", "DELETED"]
    run(go())
