"""The REST API over raw HTTPS: error Statuses, discovery, pagination, watch semantics."""

from __future__ import annotations

import http.client
import json
import signal


from .conftest import start_server


def svc(name: str, ns: str, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}], **spec}}


def create(server, ns: str, name: str) -> dict:
    status, _, body = server.request("POST", f"/api/v1/namespaces/{ns}/services", svc(name, ns))
    assert status == 201, body
    return body


def assert_status(resp, code: int, reason: str, message: str | None = None):
    status, headers, body = resp
    assert status == code, body
    assert headers.get("Content-Type", "").startswith("application/json")
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    if message is not None:
        assert body["message"] == message
    return body


def test_unauthenticated_requests_get_401(server):
    assert_status(server.request("GET", "/api/v1/services", token=None), 401, "Unauthorized")
    assert_status(server.request("GET", "/api/v1/services", token="wrong"), 401, "Unauthorized")
    status, _, body = server.request("GET", "/version", token=None)
    assert status == 200 and body["minor"] == "32"
    assert server.request("GET", "/healthz", token=None)[0] == 200


def test_discovery_legacy_and_aggregated(server):
    status, _, body = server.request("GET", "/apis")
    assert status == 200 and body["kind"] == "APIGroupList"
    assert {g["name"] for g in body["groups"]} >= {"apps", "discovery.k8s.io", "coordination.k8s.io"}
    status, _, body = server.request("GET", "/api/v1")
    svc_entry = next(r for r in body["resources"] if r["name"] == "services")
    assert svc_entry["shortNames"] == ["svc"] and svc_entry["namespaced"] is True
    assert any(r["name"] == "services/status" for r in body["resources"])
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, headers, body = server.request("GET", "/apis", headers={"Accept": accept})
    assert headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    apps = next(g for g in body["items"] if g["metadata"]["name"] == "apps")
    dep = next(r for r in apps["versions"][0]["resources"] if r["resource"] == "deployments")
    scale = next(s for s in dep["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_bad_input_gets_statuses_and_changes_nothing(server, namespace):
    base = f"/api/v1/namespaces/{namespace}/services"
    before = server.request("GET", base)[2]["items"]
    assert_status(server.request("POST", base, raw=b"{not json"), 400, "BadRequest")
    assert_status(server.request("POST", base, raw=b"kind: [unclosed",
                                 headers={"Content-Type": "application/yaml"}), 400, "BadRequest")
    wrong_ns = svc("x", "elsewhere")
    assert_status(server.request("POST", base, wrong_ns), 400, "BadRequest",
                  "the namespace of the provided object does not match the namespace sent on the request")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert_status(server.request("POST", base, cm), 400, "BadRequest")
    big = svc("big", namespace)
    big["metadata"]["annotations"] = {"a": "x" * (3 * 1024 * 1024 + 10)}
    assert_status(server.request("POST", base, big), 413, "RequestEntityTooLarge")
    create(server, namespace, "target")
    assert_status(server.request("PATCH", f"{base}/target", {"a": 1},
                                 headers={"Content-Type": "text/plain"}), 415, "UnsupportedMediaType")
    assert_status(server.request("GET", f"/api/v1/namespaces/{namespace}/widgets"), 404, "NotFound")
    assert_status(server.request("GET", f"{base}/nope"), 404, "NotFound", 'services "nope" not found')
    body = assert_status(server.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/nope"),
                         404, "NotFound", 'deployments.apps "nope" not found')
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    stale = server.request("GET", f"{base}/target")[2]
    server.request("PATCH", f"{base}/target", {"metadata": {"labels": {"v": "2"}}},
                   headers={"Content-Type": "application/merge-patch+json"})
    assert_status(server.request("PUT", f"{base}/target", stale), 409, "Conflict")
    strict = svc("strict", namespace)
    strict["spec"]["bogus"] = 1
    body = assert_status(server.request("POST", base + "?fieldValidation=Strict", strict), 400, "BadRequest")
    assert body["message"].endswith('strict decoding error: unknown field "spec.bogus"')
    after = server.request("GET", base)[2]["items"]
    assert [o["metadata"]["name"] for o in after] == [o["metadata"]["name"] for o in before] + ["target"]


def test_unknown_fields_are_dropped_with_a_warning_by_default(server, namespace):
    body = svc("warned", namespace)
    body["spec"]["bogus"] = 1
    status, headers, created = server.request("POST", f"/api/v1/namespaces/{namespace}/services", body)
    assert status == 201
    assert 'unknown field \\"spec.bogus\\"' in headers.get("Warning", "")
    assert "bogus" not in created["spec"]


def test_generate_name_and_system_fields(server, namespace):
    body = svc("", namespace)
    body["metadata"] = {"generateName": "gen-", "uid": "mine", "resourceVersion": "77"}
    body["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    status, _, created = server.request("POST", f"/api/v1/namespaces/{namespace}/services", body)
    assert status == 201
    assert created["metadata"]["name"].startswith("gen-") and len(created["metadata"]["name"]) == 9
    assert created["metadata"]["uid"] != "mine"
    assert created["status"] == {"loadBalancer": {}}  # status is ignored on create


def test_pagination_is_consistent(server, namespace):
    for i in range(7):
        create(server, namespace, f"page{i}")
    base = f"/api/v1/namespaces/{namespace}/services"
    _, _, first = server.request("GET", base + "?limit=3")
    rv = first["metadata"]["resourceVersion"]
    token = first["metadata"]["continue"]
    create(server, namespace, "page9")  # created after the first page: not in this list
    names = [o["metadata"]["name"] for o in first["items"]]
    while token:
        _, _, page = server.request("GET", base + f"?limit=3&continue={token}")
        assert page["metadata"]["resourceVersion"] == rv
        names += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue", "")
    assert names == [f"page{i}" for i in range(7)]
    assert_status(server.request("GET", base + "?limit=3&continue=garbage"), 400, "BadRequest")


def _watch_lines(server, path: str, count: int, timeout: float = 10) -> list[dict]:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.ssl_context(),
                                       timeout=timeout)
    conn.request("GET", path, headers={"Authorization": f"Bearer {server.token}"})
    resp = conn.getresponse()
    assert resp.status == 200
    out = []
    try:
        while len(out) < count:
            line = resp.readline()
            if not line:
                break
            if line.strip():
                out.append(json.loads(line))
    finally:
        conn.close()
    return out


def test_watch_resource_version_rules(server, namespace):
    base = f"/api/v1/namespaces/{namespace}/services"
    a = create(server, namespace, "wa")
    b = create(server, namespace, "wb")
    # rv=0: synthetic ADDED for what exists
    evs = _watch_lines(server, base + "?watch=true&resourceVersion=0&timeoutSeconds=2", 2)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "wa"), ("ADDED", "wb")]
    # from a given rv: exactly the changes after it
    rv = a["metadata"]["resourceVersion"]
    evs = _watch_lines(server, base + f"?watch=true&resourceVersion={rv}&timeoutSeconds=2", 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "wb")]
    assert evs[0]["object"]["metadata"]["resourceVersion"] == b["metadata"]["resourceVersion"]
    # a watch with timeoutSeconds ends by itself
    evs = _watch_lines(server, base + f"?watch=true&resourceVersion={b['metadata']['resourceVersion']}"
                       "&timeoutSeconds=1", 5, timeout=10)
    assert evs == []


def test_watch_from_compacted_revision_gets_410(tmp_path):
    s = start_server(tmp_path / "compact", extra=[])
    try:
        ns = "default"
        first = create(s, ns, "c0")
        for i in range(1, 5):
            create(s, ns, f"c{i}")
        # The server compacts on its own schedule (minutes); compact the store directly while
        # the server is stopped.
        s.stop()
        import asyncio

        from svcnet.store.sqlite import SQLiteBackend

        async def compact():
            b = SQLiteBackend(str(s.data_dir / "state.db"))
            await b.start()
            await b.compact(b.current_revision())
            await b.close()

        asyncio.run(compact())
        s = start_server(s.data_dir, s.port)
        rv = first["metadata"]["resourceVersion"]
        evs = _watch_lines(s, f"/api/v1/namespaces/{ns}/services?watch=true&resourceVersion={rv}", 1)
        assert evs[0]["type"] == "ERROR"
        assert evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired"
    finally:
        s.stop()


def test_sigterm_stops_cleanly_and_restart_reuses_credentials(tmp_path):
    s = start_server(tmp_path / "restart")
    token, ca = s.token, (s.data_dir / "pki" / "ca.crt").read_bytes()
    kubeconfig = s.kubeconfig.read_text()
    assert oct(s.kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert s.stop(signal.SIGTERM) == 0
    assert "shutting down" in s.log()
    s = start_server(s.data_dir, s.port)
    try:
        assert s.token == token and (s.data_dir / "pki" / "ca.crt").read_bytes() == ca
        assert s.kubeconfig.read_text() == kubeconfig
        assert s.request("GET", "/api/v1/namespaces/default", token=token)[0] == 200
    finally:
        assert s.stop(signal.SIGINT) == 0


def test_acknowledged_writes_survive_kill_9(tmp_path):
    s = start_server(tmp_path / "durable")
    try:
        acked = {}
        for i in range(30):
            body = create(s, "default", f"d{i}")
            acked[body["metadata"]["name"]] = body["metadata"]["resourceVersion"]
        s.stop(signal.SIGKILL)
        s = start_server(s.data_dir, s.port)
        _, _, listed = s.request("GET", "/api/v1/namespaces/default/services")
        got = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in listed["items"]}
        for name, rv in acked.items():
            assert got[name] == rv
        newer = create(s, "default", "after-restart")
        assert int(newer["metadata"]["resourceVersion"]) > max(int(v) for v in acked.values())
    finally:
        s.stop()


def test_delete_collection_with_a_label_selector(server, namespace):
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, team in (("a", "x"), ("b", "x"), ("c", "y")):
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {"team": team}}, "data": {"k": "v"}}
        assert server.request("POST", base, body)[0] == 201
    status, _, body = server.request("DELETE", base + "?labelSelector=team%3Dx")
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert sorted(o["metadata"]["name"] for o in body["items"]) == ["a", "b"]
    _, _, left = server.request("GET", base)
    assert [o["metadata"]["name"] for o in left["items"]] == ["c"]


def test_watch_list_ends_initial_events_with_a_bookmark(server, namespace):
    base = f"/api/v1/namespaces/{namespace}/services"
    create(server, namespace, "first")
    evs = _watch_lines(server, base + "?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
                       "&resourceVersionMatch=NotOlderThan&timeoutSeconds=2", 2)
    assert evs[0]["type"] == "ADDED" and evs[0]["object"]["metadata"]["name"] == "first"
    assert evs[1]["type"] == "BOOKMARK"
    assert evs[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    status, _, body = server.request("GET", base + "?watch=true&sendInitialEvents=true")
    assert status == 422 and body["reason"] == "Invalid"
