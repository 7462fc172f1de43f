"""Bundle building: fees and tip math, nonces, ids, and signatures an independent decoder reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import attrs
import pytest
from eth_abi import encode
from eth_account import Account

from aether.bundle import BundleBuilder, NonceStatistics, NonceTracker
from aether.chain import next_base_fee
from aether.messages import Call, Candidate, Head, Hop, PendingTx

ROOT = Path(__file__).resolve().parents[1]
CAST = ROOT / "node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
SIGNER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil dev key #1
VICTIM_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"  # anvil dev key #2
ROUTER_A = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
ROUTER_B = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
TKN = "0x6b175474e89094c44da98b954eedeac495271d0f"
SWAP = bytes.fromhex("38ed1739")  # swapExactTokensForTokens(uint256,uint256,address[],address,uint256)


def swap_data(amount_in: int, path: list[str], to: str) -> bytes:
    return SWAP + encode(["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, 0, path, to, 2**32])


def victim_tx(chain_id: int = 31337) -> PendingTx:
    acct = Account.from_key(VICTIM_KEY)
    signed = acct.sign_transaction(
        {"type": 2, "chainId": chain_id, "nonce": 7, "to": Account.from_key(VICTIM_KEY).address, "value": 1,
         "data": b"", "gas": 21000, "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
    )
    return PendingTx(hash=bytes(signed.hash), raw=bytes(signed.raw_transaction), type=2, chain_id=chain_id, nonce=7,
                     sender=acct.address.lower(), to=acct.address.lower(), value=1, input=b"", gas=21000,
                     max_fee_per_gas=10**10, max_priority_fee_per_gas=10**9)


HEAD = Head(number=100, hash="0x" + "11" * 32, parent_hash="0x" + "22" * 32, timestamp=1_700_000_000,
            base_fee=10**9, gas_used=20_000_000, gas_limit=30_000_000)


def candidate(*, victim: PendingTx | None, gross: int = 10**16, sim: tuple[int, ...] = (120_000, 110_000)) -> Candidate:
    signer = Account.from_key(SIGNER_KEY).address
    route = (
        Hop("sushiswap", ROUTER_B, "0x" + "aa" * 20, WETH, TKN, 10**18, 2000 * 10**18),
        Hop("uniswap", ROUTER_A, "0x" + "bb" * 20, TKN, WETH, 2000 * 10**18, 10**18 + gross),
    )
    calls = (Call(ROUTER_B, swap_data(10**18, [WETH, TKN], signer)),
             Call(ROUTER_A, swap_data(2000 * 10**18, [TKN, WETH], signer)))
    return Candidate(source="mempool_backrun" if victim else "block_arb", target_block=101, head_number=100,
                     victim=victim, route=route, amount_in=10**18, amount_out=10**18 + gross,
                     expected_gross_profit_wei=gross, gas_estimate=sum(sim), seen_at=0.0, found_at=0.0,
                     calls=calls, validated=True, simulated_gas=sim)


def builder(tip_bps: int = 8000, nonce: int = 5) -> BundleBuilder:
    nonces = NonceTracker()
    nonces.reset(nonce)
    return BundleBuilder(Account.from_key(SIGNER_KEY), 31337, tip_share_bps=tip_bps, nonces=nonces)


async def test_fees_tip_and_net_are_exact_integers() -> None:
    b = builder().build(candidate(victim=victim_tx()), HEAD, now_ns=1_778_865_600_123_456_789)
    base = next_base_fee(10**9, 20_000_000, 30_000_000)
    assert base == 10**9 + 10**9 * (5_000_000) // 15_000_000 // 8 == b.base_fee_wei
    assert b.gas_used == 230_000
    assert b.priority_fee_wei == (10**16 * 8000 // 10000) // 230_000
    assert b.max_fee_per_gas_wei == 2 * base + b.priority_fee_wei
    assert b.expected_net_profit_wei == 10**16 - 230_000 * (base + b.priority_fee_wei)
    assert b.tip_share_bps == b.priority_fee_wei * 230_000 * 10000 // 10**16
    assert 7999 <= b.tip_share_bps <= 8000
    assert b.built_at == "2026-05-15T17:20:00.123Z"
    assert b.nonces == (5, 6) and b.target_block == 101 and b.flashloan_provider == "none"
    assert b.expected_gross_profit_wei == 10**16 and b.flashloan_amount == 0
    assert b.source == "mempool_backrun" and b.candidate.victim is not None and b.candidate.gas_estimate == 230_000
    assert b.signer == Account.from_key(SIGNER_KEY).address and len(b.arb_id) == 16 and len(b.our_tx_hashes) == 2
    for v in (b.expected_gross_profit_wei, b.expected_net_profit_wei, b.base_fee_wei, b.priority_fee_wei):
        assert type(v) is int


async def test_envelope_victim_first_and_block_arb_without_victim() -> None:
    v = victim_tx()
    b = builder().build(candidate(victim=v), HEAD, now_ns=0)
    assert b.envelope[0] == v.raw and len(b.envelope) == 3
    assert b.victim_hash_hex == v.hash_hex
    b2 = builder().build(candidate(victim=None), HEAD, now_ns=0)
    assert len(b2.envelope) == 2 and b2.victim_hash_hex is None


async def test_arb_id_stable_and_distinct() -> None:
    v = victim_tx()
    a = builder().build(candidate(victim=v), HEAD, now_ns=1).arb_id
    assert a == builder(nonce=9).build(candidate(victim=v), HEAD, now_ns=2).arb_id
    assert a != builder().build(candidate(victim=None), HEAD, now_ns=1).arb_id
    assert a != builder().build(candidate(victim=v, gross=10**16 + 1), HEAD, now_ns=1).arb_id
    assert len(a) == 16 and int(a, 16) >= 0


async def test_rejects_stale_and_tampered() -> None:
    with pytest.raises(ValueError, match="targets block 101, head is 101"):
        builder().build(candidate(victim=None), Head(101, "0x", "0x", 0, 10**9, 0, 30_000_000), now_ns=0)
    v = victim_tx()
    bad = attrs.evolve(v, hash=b"\x00" * 32)
    with pytest.raises(ValueError, match="does not hash"):
        builder().build(candidate(victim=bad), HEAD, now_ns=0)


async def test_nonce_tracker_bundles_of_a_block_are_alternatives() -> None:
    n = NonceTracker()
    n.reset(10)
    assert n.reserve(2) == [10, 11]
    assert n.reserve(2) == [10, 11]  # a second bundle for the same block competes, never chains
    assert n.reserve(1) == [10]
    n.reset(12)  # a new head: one bundle's 10 and 11 landed
    assert n.reserve(1) == [12]
    assert n.statistics() == NonceStatistics(pending=12, reserved=4)
    n.reset(12)  # nothing landed (shadow mode): the same nonces again, no drift
    assert n.reserve(2) == [12, 13]


async def test_each_signed_tx_decodes_with_cast() -> None:
    c = candidate(victim=victim_tx())
    b = builder().build(c, HEAD, now_ns=0)
    signer = Account.from_key(SIGNER_KEY).address
    for i, raw in enumerate(b.envelope[1:]):
        out = subprocess.run([str(CAST), "decode-transaction", "0x" + raw.hex()], capture_output=True,
                             text=True, check=True, timeout=30)
        d = json.loads(out.stdout)
        if isinstance(d, str):  # cast 1.x prints the JSON object as a JSON string
            d = json.loads(d)
        assert int(d["type"], 16) == 2
        assert int(d["chainId"], 16) == 31337
        assert int(d["nonce"], 16) == b.nonces[i]
        assert d["to"].lower() == c.calls[i].to
        assert bytes.fromhex(d["input"][2:]) == c.calls[i].data
        assert int(d["gas"], 16) == c.simulated_gas[i] * 12 // 10
        assert int(d["maxFeePerGas"], 16) == b.max_fee_per_gas_wei
        assert int(d["maxPriorityFeePerGas"], 16) == b.priority_fee_wei
        assert int(d["value"], 16) == 0
        assert d["signer"].lower() == signer.lower()
        assert bytes.fromhex(d["hash"][2:]) == b.our_tx_hashes[i]


async def test_the_target_base_fee_is_the_heads_next() -> None:
    h = Head(1, "0x", "0x", 0, 875_000_000, 0, 30_000_000)
    assert h.next_base_fee == 875_000_000 - 875_000_000 // 8


def test_built_at_is_the_same_text_whatever_second_came_before() -> None:
    """``_iso_utc`` keeps the last second's text: equal to formatting each time, also when
    the wall clock repeats a second, steps back, or jumps across a day."""
    import random
    import time

    from aether.bundle import _iso_utc

    rng = random.Random(8601)
    now = 1_765_000_000 * 10**9
    for _ in range(5000):
        now += rng.choice((0, 1, 999_999, 10**9, -(10**9), 86_400 * 10**9, rng.getrandbits(40)))
        secs, rem = divmod(now, 10**9)
        want = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem // 1_000_000:03d}Z"
        assert _iso_utc(now) == want


def test_the_base_fee_is_each_heads_own_when_heads_alternate() -> None:
    """The builder keeps the last head's next base fee; bundles for heads in turn (A, B, A, and
    an equal but distinct copy of B) each carry their own head's figure."""
    from aether.chain import next_base_fee as nbf

    account = Account.from_key(SIGNER_KEY)
    builder = BundleBuilder(account, 31337, tip_share_bps=5000, nonces=NonceTracker())
    a = Head(number=10, hash="0x" + "11" * 32, parent_hash="0x" + "22" * 32, timestamp=1, base_fee=10**9,
             gas_used=29_000_000, gas_limit=30_000_000)
    b = attrs.evolve(a, base_fee=7 * 10**9, gas_used=1_000_000)
    call = Call(ROUTER_A, swap_data(10**18, [WETH, TKN], account.address))
    for head in (a, b, a, attrs.evolve(b), a):
        cand = Candidate(source="mempool_backrun", target_block=head.number + 1, head_number=head.number,  # type: ignore[arg-type]
                         victim=None, route=(), amount_in=1, amount_out=2, expected_gross_profit_wei=10**16,
                         gas_estimate=200_000, seen_at=0.0, found_at=0.0, calls=(call,))
        bundle = builder.build(cand, head, now_ns=0)
        assert bundle.base_fee_wei == nbf(head.base_fee, head.gas_used, head.gas_limit) == head.next_base_fee
