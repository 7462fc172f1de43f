"""EIP-1559 base fee arithmetic and header decoding, checked against anvil's real blocks."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from aether._errors import DecodeError
from aether.chain import head_from_rpc, next_base_fee, open_rpc
from aether.devnet import run_anvil

DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"  # anvil's account 0


# --------------------------------------------------------------------------- next_base_fee


def test_at_target_the_base_fee_stays() -> None:
    assert next_base_fee(10**9, 15_000_000, 30_000_000) == 10**9


def test_full_block_raises_by_an_eighth() -> None:
    assert next_base_fee(10**9, 30_000_000, 30_000_000) == 1_125_000_000


def test_empty_block_lowers_by_an_eighth() -> None:
    assert next_base_fee(10**9, 0, 30_000_000) == 875_000_000


def test_above_target_rises_at_least_one_wei() -> None:
    # 7 * 1 // 15M // 8 == 0, but the rule is max(delta, 1)
    assert next_base_fee(7, 15_000_001, 30_000_000) == 8


def test_below_target_may_not_move_with_tiny_fees() -> None:
    assert next_base_fee(7, 14_999_999, 30_000_000) == 7


def test_integer_rounding_matches_the_spec_order_of_divisions() -> None:
    # base * delta // target // 8, not base * delta // (target * 8) with different rounding on the way
    base, used, limit = 1_000_000_007, 20_000_003, 30_000_000
    target = limit // 2
    assert next_base_fee(base, used, limit) == base + base * (used - target) // target // 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 0, 30_000_000), "base fee and gas used must be non-negative"),
        ((1, -1, 30_000_000), "base fee and gas used must be non-negative"),
        ((1, 0, 1), "gas limit 1 is below 2"),
        ((1, 31, 30), "gas used 31 exceeds the gas limit 30"),
    ],
)
def test_bad_inputs_raise_value_error(args: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        next_base_fee(*args)


@given(
    base=st.integers(min_value=0, max_value=10**15),
    limit=st.integers(min_value=2, max_value=60_000_000),
    frac=st.fractions(min_value=0, max_value=1),
)
def test_change_is_bounded_by_an_eighth_and_directed(base: int, limit: int, frac: Any) -> None:
    target = limit // 2
    used = min(int(limit * frac), 2 * target)  # an odd limit's last unit of gas is above 2 * target
    nxt = next_base_fee(base, used, limit)
    assert isinstance(nxt, int)
    if used > target:
        assert base < nxt <= base + max(base // 8, 1)
    elif used < target:
        assert base - base // 8 <= nxt <= base
    else:
        assert nxt == base


# --------------------------------------------------------------------------- head_from_rpc

HEADER = {
    "hash": "0xFC3C12ED5965FAA1FE45F0C368ABBF2015D3DF14F4521B4A6E1C09BBD7BC6179",
    "parentHash": "0xd7b6f1d5655c4c6f7ab64de346c71f6f4591f32e4d6a5dd4f75e7e0a70e9bce9",
    "number": "0x1",
    "gasLimit": "0x1c9c380",
    "gasUsed": "0x1072c",
    "timestamp": "0x6b05f541",
    "baseFeePerGas": "0x3b9aca00",
    "miner": "0x0000000000000000000000000000000000000000",
}


def test_head_from_anvil_shaped_header() -> None:
    head = head_from_rpc(HEADER, seen_at=3.25)
    assert head.number == 1
    assert head.hash == HEADER["hash"].lower()
    assert head.parent_hash == HEADER["parentHash"]
    assert (head.gas_limit, head.gas_used, head.base_fee) == (30_000_000, 67_372, 10**9)
    assert head.timestamp == 0x6B05F541
    assert head.seen_at == 3.25


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("baseFeePerGas", None),  # pre-London
        ("number", 1),
        ("number", "0x"),
        ("hash", "0x12"),
        ("parentHash", None),
        ("gasUsed", "0x1c9c381"),  # above the limit
        ("gasLimit", "1c9c380"),
        ("timestamp", None),
    ],
)
def test_bad_header_is_decode_error(key: str, value: object) -> None:
    obj = dict(HEADER)
    if value is None:
        del obj[key]
    else:
        obj[key] = value
    with pytest.raises(DecodeError) as info:
        head_from_rpc(obj)
    assert info.value.reason == "bad_fields"


@pytest.mark.parametrize("obj", [None, "0x1", [HEADER]])
def test_non_object_header_is_decode_error(obj: object) -> None:
    with pytest.raises(DecodeError):
        head_from_rpc(obj)


# --------------------------------------------------------------------------- against anvil


@pytest.mark.devnet
async def test_next_base_fee_predicts_anvils_blocks() -> None:
    """Blocks below, at-ish and above target on a 100k gas limit; each child's base fee is predicted."""
    acct = Account.from_key(DEV_KEY)
    to = "0x" + "42" * 20
    txs_per_block = [0, 1, 2, 3, 4, 4, 0, 3]  # 21k each; target is 50k
    async with run_anvil(extra_args=["--gas-limit", "100000"]) as node, open_rpc(node.rpc_url) as rpc:
        chain_id = int(await rpc.call("eth_chainId"), 16)
        gas_price = 50 * 10**9
        nonce = 0
        for count in txs_per_block:
            for _ in range(count):
                signed = acct.sign_transaction(
                    {"nonce": nonce, "gas": 21000, "gasPrice": gas_price, "to": to, "value": 1, "chainId": chain_id}
                )
                await rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])
                nonce += 1
            await rpc.call("evm_mine", [])
        blocks = await rpc.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(len(txs_per_block) + 1)]
        )
    heads = [head_from_rpc(b) for b in blocks]
    assert [h.gas_used for h in heads[1:]] == [21000 * c for c in txs_per_block]
    # genesis -> block 1 is anvil's fork-activation special case (the initial base fee is kept);
    # from block 1 on every child follows the formula.
    for parent, child in zip(heads[1:], heads[2:], strict=False):
        assert child.parent_hash == parent.hash
        assert child.base_fee == next_base_fee(parent.base_fee, parent.gas_used, parent.gas_limit)
    # the run went both ways, so both branches were compared against the node
    fees = [h.base_fee for h in heads[1:]]
    assert any(b > a for a, b in zip(fees, fees[1:], strict=False))
    assert any(b < a for a, b in zip(fees, fees[1:], strict=False))


def test_a_header_whose_gas_limit_cannot_carry_eip1559_is_a_counted_decode_error() -> None:
    from aether._errors import DecodeError
    from aether.chain import head_from_rpc

    obj = {"number": "0x1", "hash": "0x" + "11" * 32, "parentHash": "0x" + "22" * 32, "timestamp": "0x1",
           "baseFeePerGas": "0x7", "gasUsed": "0x0", "gasLimit": "0x1"}
    try:
        head_from_rpc(obj)
    except DecodeError as exc:
        assert exc.reason == "bad_fields" and "gasLimit" in str(exc)
    else:
        raise AssertionError("a gas limit of 1 was accepted")
    assert head_from_rpc({**obj, "gasLimit": "0x2"}).gas_limit == 2
