"""Intake skips a victim it has already forwarded (a bounded, least-recently-seen set of hashes).

The production finding behind it: in the 30-minute shadow run a third of the mempool
bundles were the same pending transaction announced again about a second later,
simulated and built again, then refused by risk's ``dedup`` gate.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from eth_utils import to_checksum_address

from aether.actors import IntakeActor, IntakeSkip, RecentHashes
from aether.chain import Frame
from aether.messages import PendingTx
from aether.metrics import Metrics
from test_codec import KEYS, _signed_obj, node_json

ROUTER = "0x" + "ab" * 20  # the `to` of test_codec's signed objects


def _intake(size: int = 8, **kw: Any) -> tuple[IntakeActor, trio.MemoryReceiveChannel[PendingTx], Metrics]:
    m = Metrics()
    send, recv = trio.open_memory_channel[PendingTx](size)
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=1, routers={ROUTER},  # type: ignore[arg-type]
                         metrics=m, out=send, **kw)
    return intake, recv, m


def _tx(nonce: int, *, tip_gwei: int = 2, key: int = 0) -> dict[str, Any]:
    tx: dict[str, Any] = {"type": 2, "nonce": nonce, "gas": 200_000, "to": to_checksum_address(ROUTER),
                          "value": 10**17, "data": bytes.fromhex("7ff36ab5") + bytes(128), "chainId": 1,
                          "maxFeePerGas": 30 * 10**9, "maxPriorityFeePerGas": tip_gwei * 10**9, "accessList": []}
    return node_json(tx, KEYS[key].sign_transaction(tx), KEYS[key].address)


def _screen(intake: IntakeActor, obj: dict[str, Any]) -> PendingTx | None:
    return intake.screen(Frame(dict(obj), 0.0, 0))


def _duplicates(m: Metrics) -> float:
    return m.value("aether_mempool_screen_skipped_total", reason="duplicate")


def test_the_duplicate_reason_is_exported_at_zero() -> None:
    _, _, m = _intake()
    assert 'reason="duplicate"' in m.exposition().decode()
    assert _duplicates(m) == 0
    assert IntakeSkip.DUPLICATE == "duplicate"


def test_a_re_announced_transaction_is_skipped_and_counted() -> None:
    intake, recv, m = _intake()
    obj = _signed_obj()
    first = _screen(intake, obj)
    assert first is not None and recv.receive_nowait() == first
    for _ in range(3):
        assert _screen(intake, obj) is None
    with pytest.raises(trio.WouldBlock):
        recv.receive_nowait()  # nothing more reached the strategy
    assert intake.duplicates == 3 and _duplicates(m) == 3
    assert intake.statistics().processed == 1
    assert intake.statistics().rejected == 0  # a duplicate is not a malformed frame
    assert m.value("aether_mempool_pending_seen_total") == 4  # every announcement was still seen


def test_another_spelling_of_the_same_transaction_is_the_same_transaction() -> None:
    intake, recv, m = _intake()
    obj = _signed_obj()
    assert _screen(intake, obj) is not None
    # The same hash in upper case, the `to` checksummed, quantities with leading zeros:
    # the key is the 32 bytes the decoder checked against the re-encoding.
    aliases = [
        dict(obj, hash="0x" + obj["hash"][2:].upper()),
        dict(obj, to=to_checksum_address(obj["to"])),
        dict(obj, nonce="0x0" + obj["nonce"][2:], value="0x00" + obj["value"][2:]),
    ]
    for alias in aliases:
        assert _screen(intake, alias) is None
    assert _duplicates(m) == len(aliases)
    assert intake.statistics().processed == 1
    recv.receive_nowait()


def test_a_frame_cannot_claim_a_hash_it_does_not_carry() -> None:
    """A frame naming a seen hash over other contents is a hash mismatch, not a duplicate (and the
    reverse: a forged hash cannot poison the set against the real transaction)."""
    intake, recv, m = _intake()
    real, other = _tx(1), _tx(2)
    forged = dict(other, hash=real["hash"])
    assert _screen(intake, forged) is None
    assert m.value("aether_mempool_intake_rejected_total", reason="hash_mismatch") == 1
    assert _screen(intake, real) is not None  # not marked seen by the forgery
    assert _screen(intake, dict(real, hash=other["hash"])) is None
    assert _duplicates(m) == 0
    assert intake.statistics().processed == 1
    recv.receive_nowait()


def test_a_replacement_transaction_is_not_a_duplicate() -> None:
    """Same sender and nonce, a higher tip: a new transaction with a new hash, screened again."""
    intake, recv, m = _intake()
    a, b = _tx(5, tip_gwei=2), _tx(5, tip_gwei=3)
    assert a["hash"] != b["hash"] and a["from"] == b["from"] and a["nonce"] == b["nonce"]
    ta, tb = _screen(intake, a), _screen(intake, b)
    assert ta is not None and tb is not None and ta.hash != tb.hash
    assert _duplicates(m) == 0
    assert _screen(intake, a) is None and _screen(intake, b) is None  # each seen once already
    assert _duplicates(m) == 2
    assert [recv.receive_nowait().hash for _ in range(2)] == [ta.hash, tb.hash]


def test_the_set_is_bounded_and_an_evicted_hash_is_taken_again() -> None:
    intake, recv, m = _intake(size=64, seen_max=2)
    a, b, c = _tx(1), _tx(2), _tx(3)
    assert _screen(intake, a) and _screen(intake, b)
    assert _screen(intake, a) is None  # seen: and now the newest
    assert _screen(intake, c)  # evicts b, the least recently seen
    assert _screen(intake, a) is None  # still held
    assert _screen(intake, b) is not None  # evicted, so taken again (it evicts c)
    assert _screen(intake, c) is not None
    assert _duplicates(m) == 2
    assert intake.statistics().processed == 5


def test_a_victim_dropped_on_overload_is_taken_when_announced_again() -> None:
    """The strategy's inbox was full: the victim was dropped unprocessed, so its next
    announcement is not a duplicate."""
    intake, recv, m = _intake(size=1)
    a, b = _tx(1), _tx(2)
    assert _screen(intake, a) is not None
    assert _screen(intake, b) is None  # inbox full: dropped
    assert intake.statistics().dropped == 1
    recv.receive_nowait()
    assert _screen(intake, b) is not None
    assert _duplicates(m) == 0


def test_recent_hashes_is_a_bounded_lru() -> None:
    r = RecentHashes(3)
    keys = [bytes([i]) * 32 for i in range(5)]
    assert [r.seen(k) for k in keys[:3]] == [False, False, False]
    assert r.seen(keys[0]) is True  # refreshed: keys[1] is now the oldest
    assert r.seen(keys[3]) is False and len(r) == 3
    assert [r.seen(k) for k in (keys[0], keys[2], keys[3])] == [True, True, True]
    assert r.seen(keys[1]) is False  # it was evicted
    r.forget(keys[1])
    r.forget(keys[4])  # never seen: no error
    assert r.seen(keys[1]) is False
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        RecentHashes(0)
