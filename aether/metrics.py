"""Prometheus metrics, one registry per process (tests make their own).

The seed's three names are a contract and stay exactly as written:
``aether_mempool_risk_rejected_total{reason}``,
``aether_executor_bundles_shadow_blocked_total{source}`` and
``aether_executor_bundles_submitted_total{source}``. Labels take only bounded
values (gate, source, builder label, actor, reason), never hashes or blocks, and
every labelled series is created at start-up so ``rate()`` sees the first
increment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ._errors import NodeErrorKind
from .messages import BLOCK_ARB_GATES, GATES, HALT_GATES, RISK_ERROR, SOURCES, HaltReason, RiskState, Source
from .settlement import OUTCOMES
from .strategy._backrun import V3Reject
from .strategy._poststate import ScreenSkip, SimFailure
from .strategy._screen import ScreenHint

__all__ = ["CANDIDATE_REJECT_REASONS", "INTAKE_REJECT_REASONS", "RISK_HALT_REASONS", "HotCounter", "Metrics"]

class _HotSeries:
    """One series of a :class:`HotCounter`: a plain int."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        if amount < 0:
            raise ValueError(f"a counter only goes up, not by {amount}")
        self.value += amount


class HotCounter(Collector):
    """A counter for the per-frame path, read by Prometheus when it scrapes.

    prometheus-client's ``Counter`` takes a lock on every ``inc()`` (about 0.3 us);
    the screen counts two a frame, a tenth of what screening a frame costs. Here a
    series is a plain int that only the event loop increments; the scrape thread
    reads whole ints (the GIL sees to that) through :meth:`collect`, the registry's
    collector interface. Exposed as ``Counter`` exposes its samples (``<name>_total``
    by label), without the ``_created`` series. Same calls: ``labels(...).inc()``,
    or ``inc()`` without labels.
    """

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = (), *,
                 registry: CollectorRegistry | None = None) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], _HotSeries] = {}
        self._unlabelled = None if self._labelnames else self.labels()
        if registry is not None:
            registry.register(self)

    def labels(self, *values: str) -> _HotSeries:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: {len(self._labelnames)} label values expected, got {len(values)}")
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _HotSeries()
        return series

    def inc(self, amount: int = 1) -> None:
        if self._unlabelled is None:
            raise ValueError(f"{self._name} has labels: use labels(...).inc()")
        self._unlabelled.inc(amount)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for key, series in list(self._series.items()):
            family.add_metric(list(key), series.value)
        yield family


#: Why a pending transaction was not turned into a candidate.
INTAKE_REJECT_REASONS: tuple[str, ...] = (
    "bad_frame",
    "bad_fields",
    "hash_mismatch",
    "unsupported_type",
    "wrong_chain",
    "fetch_failed",
)

#: Why a decoded swap or a head produced no candidate.
CANDIDATE_REJECT_REASONS: tuple[str, ...] = (
    "not_router",
    "not_swap",
    "bad_calldata",
    "fee_on_transfer",
    "unknown_token",
    "no_weth_leg",
    "unknown_pair",
    "zero_reserves",
    "victim_reverts",
    "victim_expired",
    "no_counter_pool",
    "unprofitable",
    "no_inventory",
    "overflow",
    "reserves_unavailable",
    "validation_mismatch",
    "validation_failed",
    "victim_nonce_ahead",
    "victim_nonce_used",
    "stale_head",
    "build_failed",
    *(r.value for r in SimFailure),
    *(r.value for r in V3Reject),
)

RISK_STATES: tuple[str, ...] = tuple(s.value for s in RiskState)

#: What can halt risk: the three HALT gates, a failed save of the risk state
#: (``risk_error``) and the shadow sink's unwritable reports directory.
RISK_HALT_REASONS: tuple[str, ...] = (*HALT_GATES, RISK_ERROR, HaltReason.REPORTS_DIR_WRITABLE.value)


class Metrics:
    """Every metric aether exports, on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None, *, builders: Iterable[str] = ()) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        # The seed's three names.
        self.risk_rejected = Counter(
            "aether_mempool_risk_rejected", "Bundles rejected by a risk gate", ["reason"], registry=r
        )
        self.shadow_blocked = Counter(
            "aether_executor_bundles_shadow_blocked",
            "Bundles that passed every gate and were not sent because shadow mode is on",
            ["source"],
            registry=r,
        )
        self.submitted = Counter(
            "aether_executor_bundles_submitted", "Bundles sent to builders with eth_sendBundle", ["source"], registry=r
        )
        # Ours.
        # The block-driven source's rejections: the seed's counter belongs to the mempool source.
        self.block_arb_risk_rejected = Counter(
            "aether_block_arb_risk_rejected", "Block-driven bundles rejected by a risk gate", ["reason"], registry=r
        )
        self.candidates = Counter("aether_candidates", "Sized candidates found", ["source"], registry=r)
        self.candidate_rejected = Counter(
            "aether_candidate_rejected", "Opportunities dropped before a bundle", ["source", "reason"], registry=r
        )
        self.bundles_built = Counter("aether_bundles_built", "Signed bundles built", ["source"], registry=r)
        self.dumps_written = Counter("aether_shadow_dumps_written", "Forensic JSON dumps written", ["source"], registry=r)
        self.dump_errors = Counter("aether_shadow_dump_errors", "Forensic dumps that could not be written", registry=r)
        # The three counts every pending frame makes: HotCounter, no lock per increment.
        self.pending_seen = HotCounter("aether_mempool_pending_seen", "Pending transactions received", registry=r)
        self.intake_rejected = Counter(
            "aether_mempool_intake_rejected", "Pending transactions that could not be decoded", ["reason"], registry=r
        )
        self.ws_reconnects = Counter("aether_ws_reconnects", "WebSocket reconnects", ["stream"], registry=r)
        self.panics = Counter("aether_actor_panics", "Exceptions that escaped an actor", ["actor"], registry=r)
        self.dropped = Counter("aether_channel_dropped", "Messages dropped under load", ["channel"], registry=r)
        self.risk_state = Gauge("aether_risk_state", "1 for the current risk state", ["state"], registry=r)
        self.risk_halt_reason = Gauge("aether_risk_halted", "1 while a HALT latch of this gate is set", ["gate"], registry=r)
        # A latch that was set and released between two scrapes leaves no trace in the gauge; this does.
        self.risk_halts = Counter(
            "aether_risk_halts", "HALT latches that went on (once per episode; not the start-up wait for a head)",
            ["gate"], registry=r,
        )
        self.builder_requests = Counter(
            "aether_builder_requests", "eth_sendBundle requests by builder and outcome", ["builder", "outcome"], registry=r
        )
        self.included = Counter("aether_bundles_included", "Submitted bundles that landed", ["source"], registry=r)
        self.not_included = Counter("aether_bundles_not_included", "Submitted bundles that missed", ["source"], registry=r)
        self.reverted = Counter("aether_bundles_reverted", "Our transactions that landed reverted", ["source"], registry=r)
        self.inclusion_unknown = Counter(
            "aether_inclusion_unknown",
            "Submitted bundles the node never let us judge (neither included nor missed)", ["source"], registry=r,
        )
        self.realised_profit = Gauge(
            "aether_realised_profit_wei", "Sum of realised profit of included bundles in wei (can go negative)",
            ["source"], registry=r,
        )
        self.included_predicted = Gauge(
            "aether_included_predicted_profit_wei", "Sum of predicted net profit of included bundles in wei",
            ["source"], registry=r,
        )
        self.inclusion_delta = Gauge(
            "aether_inclusion_delta_wei",
            "Sum over included bundles of realised minus predicted net profit in wei (0 when every prediction held)",
            ["source"], registry=r,
        )
        self.included_exact = Counter(
            "aether_bundles_included_exact", "Included bundles that realised their predicted net profit to the wei",
            ["source"], registry=r,
        )
        self.included_clean = Counter(
            "aether_bundles_included_clean",
            "Included bundles whose pools nothing but the victim and us touched before our last transaction",
            ["source"], registry=r,
        )
        self.inclusion_records = Counter(
            "aether_inclusion_records", "Lines written to inclusions.jsonl", registry=r
        )
        self.inclusion_record_errors = Counter(
            "aether_inclusion_record_errors", "Outcomes that could not be written to inclusions.jsonl", registry=r
        )
        self.predicted_profit = Counter(
            "aether_predicted_profit_wei", "Predicted gross profit of built bundles in wei", ["source"], registry=r
        )
        self.head = Gauge("aether_head_block", "Latest head block number seen", registry=r)
        self.validation_seconds = Histogram(
            "aether_validation_seconds", "eth_simulateV1 round trip", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.settlements = Counter(
            "aether_bundle_settlements", "Bundles that passed risk, by their outcome at the target block",
            ["source", "outcome"], registry=r,
        )
        self.settlement_record_errors = Counter(
            "aether_settlement_record_errors", "Settlements that could not be written to settlements.jsonl",
            registry=r,
        )
        # Victim detection by simulation (aether.strategy._poststate, _screen).
        self.screen_skipped = HotCounter(
            "aether_mempool_screen_skipped", "Pending transactions not simulated, by reason", ["reason"], registry=r
        )
        self.screen_passed = HotCounter(
            "aether_mempool_screen_passed", "Pending transactions let through to simulation, by hint", ["hint"],
            registry=r,
        )
        self.untrusted_logs = Counter(
            "aether_victim_untrusted_logs",
            "Sync-signature logs ignored because their emitter is not a tracked pair (CREATE2 check failed)",
            registry=r,
        )
        self.victim_sim_seconds = Histogram(
            "aether_victim_simulation_seconds", "Victim eth_simulateV1 round trip (the node's time)", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.shadow_mode = Gauge("aether_shadow_mode", "1 when shadow mode is on", registry=r)
        self.node_errors = Counter(
            "aether_node_errors", "Failed node interactions (each fails closed), by kind", ["kind"], registry=r
        )
        self._init_series(builders)

    def _init_series(self, builders: Iterable[str]) -> None:
        for reason in (*GATES, RISK_ERROR):
            self.risk_rejected.labels(reason)
        for reason in (*BLOCK_ARB_GATES, RISK_ERROR):
            self.block_arb_risk_rejected.labels(reason)
        for source in SOURCES:
            for c in (self.shadow_blocked, self.submitted, self.candidates, self.bundles_built, self.dumps_written,
                      self.included, self.not_included, self.inclusion_unknown, self.reverted,
                      self.predicted_profit,
                      self.included_exact, self.included_clean, self.realised_profit, self.included_predicted,
                      self.inclusion_delta):
                c.labels(source)
            for reason in CANDIDATE_REJECT_REASONS:
                self.candidate_rejected.labels(source, reason)
            for outcome in OUTCOMES:
                self.settlements.labels(source, outcome)
        for reason in INTAKE_REJECT_REASONS:
            self.intake_rejected.labels(reason)
        for skip in ScreenSkip:
            self.screen_skipped.labels(skip.value)
        for hint in ScreenHint:
            self.screen_passed.labels(hint.value)
        for state in RISK_STATES:
            self.risk_state.labels(state)
        for gate in GATES:
            self.risk_halt_reason.labels(gate)
        for gate in RISK_HALT_REASONS:
            self.risk_halts.labels(gate)
        for stream in ("newHeads", "newPendingTransactions"):
            self.ws_reconnects.labels(stream)
        for kind in NodeErrorKind:
            self.node_errors.labels(kind)
        for b in builders:
            for answer in ("ok", "rpc_error", "http_error", "timeout", "unreachable", "bad_json", "cancelled"):
                self.builder_requests.labels(b, answer)

    def rejected_counter(self, source: str) -> Counter:
        """The risk-rejection counter of ``source``.

        ``block_arb`` has its own; anything else (the mempool source, or a
        source risk does not know, which fails closed) counts in the seed's
        ``aether_mempool_risk_rejected_total``.
        """
        return self.block_arb_risk_rejected if source == Source.BLOCK_ARB else self.risk_rejected

    def set_risk_state(self, state: str) -> None:
        for s in RISK_STATES:
            self.risk_state.labels(s).set(1 if s == state else 0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Read a sample by full name (``..._total``); 0 when absent. For tests and reports."""
        v = self.registry.get_sample_value(name, labels or None)
        return 0.0 if v is None else v
