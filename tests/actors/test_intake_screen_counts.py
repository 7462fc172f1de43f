"""Intake counts each frame once in ``pending_seen`` and once by the prefilter's verdict.

The counters are bound ``inc`` methods cached per verdict: these tests hold the counts
equal to the verdicts the prefilter gives the same frames, hint by hint and reason by
reason, over a mixed stream (every hint and skip reason, frames that are not objects,
victims forwarded and duplicates), and with two intakes counting into one registry.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from aether.actors import IntakeActor
from aether.chain import Frame
from aether.config import ChainConfig, TokenConfig
from aether.messages import PendingTx
from aether.metrics import Metrics
from aether.strategy import Prefilter, ScreenHint, ScreenSkip
from test_codec import _signed_obj

TOKEN = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
OTHER_TOKEN = "1f9840a85d5af5bf1d1762f925bdaddc4201f984"
ROUTER = "0x" + "ab" * 20  # the `to` of test_codec's signed object
CHAIN = ChainConfig(weth="0x" + TOKEN, dexes=(), tokens=(TokenConfig("0x" + OTHER_TOKEN, "UNI"),))


def _objects() -> list[Any]:
    """Every verdict the prefilter gives, in odd spellings, and frames intake drops before it."""
    other = "0x" + "77" * 20
    word = "0" * 24
    return [
        {"to": None, "input": "0x12"},  # contract_creation
        {"to": 5, "input": "0x" + TOKEN},  # contract_creation: not a str
        {"to": other, "input": "0x"},  # plain_transfer
        {"to": other},  # plain_transfer: no calldata at all
        {"to": other, "input": None, "data": b"0x1234"},  # plain_transfer: not a str
        {"to": other, "input": "0xa9059cbb" + word + "11" * 20 + "0" * 64},  # no_pool_hint
        {"to": other, "input": "0xa9059cbb" + word + TOKEN.upper() + "0" * 64},  # token, upper case
        {"to": other, "data": "0x1" + OTHER_TOKEN + "0"},  # token at an odd offset, in `data`
        {"to": other, "input": "0x" + "0" * 16_360 + OTHER_TOKEN},  # token straddling the scan bound: no hint
        {"to": ROUTER.upper().replace("0X", "0x"), "input": "0x12"},  # router (decoded: rejected, bad fields)
        {"to": "0x" + "cd" * 20, "input": "0x12"},  # learned
        [1, 2],  # not an object: seen, never screened
        "0x" + "ee" * 32,
    ]


def _intake(m: Metrics, pf: Prefilter, size: int = 64) -> tuple[IntakeActor, trio.MemoryReceiveChannel[PendingTx]]:
    send, recv = trio.open_memory_channel[PendingTx](size)
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=1, routers=set(), metrics=m,  # type: ignore[arg-type]
                         out=send, prefilter=pf)
    return intake, recv


def _counts(m: Metrics) -> tuple[dict[str, float], dict[str, float]]:
    skipped = {r.value: m.value("aether_mempool_screen_skipped_total", reason=r.value) for r in ScreenSkip}
    passed = {h.value: m.value("aether_mempool_screen_passed_total", hint=h.value) for h in ScreenHint}
    return skipped, passed


def test_every_frame_is_counted_once_by_the_prefilters_verdict() -> None:
    m = Metrics()
    pf = Prefilter(CHAIN, routers=[ROUTER])
    pf.learn(["0x" + "CD" * 20])
    intake, recv = _intake(m, pf)
    objs = _objects() * 3 + [_signed_obj(), _signed_obj()]  # a victim forwarded, then its duplicate
    want: Counter[tuple[bool, str]] = Counter(pf.screen(o) for o in objs if isinstance(o, dict))
    for o in objs:
        intake.screen(Frame(o, 0.0, 0))
    skipped, passed = _counts(m)
    assert m.value("aether_mempool_pending_seen_total") == len(objs) == intake.seen
    for reason, n in skipped.items():
        assert n == want[(False, reason)], reason
    for hint, n in passed.items():
        assert n == want[(True, hint)], hint
    assert want[(True, "router")] == 5 and want[(True, "token")] == 6 and want[(True, "learned")] == 3
    assert want[(False, "no_pool_hint")] == 6 and want[(False, "plain_transfer")] == 9
    assert want[(False, "contract_creation")] == 6
    assert m.value("aether_mempool_screen_skipped_total", reason="duplicate") == intake.duplicates == 1
    assert intake.statistics().processed == 1 and recv.receive_nowait().to is not None


def test_two_intakes_on_one_registry_add_up() -> None:
    """The counters are cached per intake, the series are the registry's: a second intake (a
    restart under the supervisor) counts into the same series, from where the first left off."""
    m = Metrics()
    pf = Prefilter(CHAIN, routers=[ROUTER])
    first, _ = _intake(m, pf)
    second, _ = _intake(m, pf)
    other = "0x" + "77" * 20
    for intake in (first, second, first):
        intake.screen(Frame({"to": other, "input": "0x"}, 0.0, 0))
        intake.screen(Frame({"to": other, "input": "0x" + TOKEN}, 0.0, 0))
    skipped, passed = _counts(m)
    assert skipped["plain_transfer"] == 3 and passed["token"] == 3
    assert m.value("aether_mempool_pending_seen_total") == 6
    assert first.seen == 4 and second.seen == 2
