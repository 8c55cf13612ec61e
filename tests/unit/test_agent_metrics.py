"""The agent's Prometheus histograms: buckets fine enough to tell 8 ms from 12 ms."""

from svcnet.agent import metrics


def _bucket_counts(text: str, name: str) -> dict[str, int]:
    return {line.split('le="')[1].split('"')[0]: int(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(f"{name}_bucket")}


def test_latency_buckets_separate_the_values_the_agent_measures():
    h = metrics.Histogram("test_latency_seconds", "test", metrics.LATENCY_BUCKETS)
    metrics.REGISTRY.remove(h)
    for v in (0.008, 0.0085, 0.012, 0.155):
        h.observe(v)
    counts = _bucket_counts(h.render(), "test_latency_seconds")
    assert counts["0.007"] == 0 and counts["0.008"] == 1 and counts["0.009"] == 2
    assert counts["0.012"] == 3 and counts["0.15"] == 3 and counts["0.175"] == 4
    assert counts["+Inf"] == 4
    assert metrics.LATENCY_BUCKETS == sorted(set(metrics.LATENCY_BUCKETS))


def test_kube_proxy_histograms_use_them():
    from svcnet.agent.proxy import proxier

    for h in (proxier.SYNC_DURATION, proxier.PROGRAMMING_LATENCY):
        assert h.bounds == metrics.LATENCY_BUCKETS
    assert proxier.SYNC_DURATION.name == "kubeproxy_sync_proxy_rules_duration_seconds"
    assert proxier.PROGRAMMING_LATENCY.name == "kubeproxy_network_programming_duration_seconds"
