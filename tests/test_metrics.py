"""HotCounter: the per-frame counts without a lock, exposed as prometheus-client's Counter exposes them."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from aether.metrics import HotCounter, Metrics


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition's lines, less prometheus-client's ``_created`` series."""
    lines = generate_latest(registry).decode().splitlines()
    return [ln for ln in lines if "_created" not in ln]


def test_a_hot_counter_exposes_the_samples_a_counter_would() -> None:
    hot_reg, ref_reg = CollectorRegistry(), CollectorRegistry()
    hot = HotCounter("x_skipped", "doc", ["reason"], registry=hot_reg)
    ref = Counter("x_skipped", "doc", ["reason"], registry=ref_reg)
    plain_hot = HotCounter("x_seen", "seen", registry=hot_reg)
    plain_ref = Counter("x_seen", "seen", registry=ref_reg)
    for reason, n in (("a", 3), ("b", 0), ("c", 1)):
        hot.labels(reason)
        ref.labels(reason)
        for _ in range(n):
            hot.labels(reason).inc()
            ref.labels(reason).inc()
    hot.labels("a").inc(5)
    ref.labels("a").inc(5)
    for _ in range(7):
        plain_hot.inc()
        plain_ref.inc()
    assert _exposition(hot_reg) == _exposition(ref_reg)
    text = generate_latest(hot_reg).decode()
    assert 'x_skipped_total{reason="a"} 8.0' in text and 'x_skipped_total{reason="b"} 0.0' in text
    assert "x_seen_total 7.0" in text


def test_a_hot_counter_refuses_what_a_counter_refuses() -> None:
    c = HotCounter("y", "doc", ["reason"])
    with pytest.raises(ValueError, match="only goes up"):
        c.labels("a").inc(-1)
    with pytest.raises(ValueError, match="1 label values expected, got 2"):
        c.labels("a", "b")
    with pytest.raises(ValueError, match="has labels"):
        c.inc()
    assert c.labels("a").value == 0


def test_the_screen_counts_read_through_metrics_value() -> None:
    m = Metrics()
    m.pending_seen.inc()
    m.pending_seen.inc()
    m.screen_skipped.labels("plain_transfer").inc()
    m.screen_passed.labels("token").inc(3)
    assert m.value("aether_mempool_pending_seen_total") == 2
    assert m.value("aether_mempool_screen_skipped_total", reason="plain_transfer") == 1
    assert m.value("aether_mempool_screen_passed_total", hint="token") == 3
    assert m.value("aether_mempool_screen_passed_total", hint="router") == 0  # created at start-up


def test_a_scrape_during_increments_sees_whole_monotonic_counts() -> None:
    """The event loop increments while the scrape thread reads: each scrape sees a whole count,
    never less than the one before, and a new series appearing mid-scrape does not break it."""
    reg = CollectorRegistry()
    c = HotCounter("z", "doc", ["k"], registry=reg)
    stop = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not stop.is_set():
            v = reg.get_sample_value("z_total", {"k": "0"})
            if v is not None:
                seen.append(v)
            generate_latest(reg)

    t = threading.Thread(target=scrape)
    t.start()
    try:
        for i in range(200_000):
            c.labels("0").inc()
            if i % 1000 == 0:
                c.labels(str(i))  # new series while the scraper iterates
    finally:
        stop.set()
        t.join()
    assert seen == sorted(seen) and all(v == int(v) for v in seen)
    assert reg.get_sample_value("z_total", {"k": "0"}) == 200_000
