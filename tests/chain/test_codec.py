"""The pending-transaction codec against eth-account, and its counted rejections."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether._errors import DecodeError
from aether.chain import decode_pending_tx, keccak256

KEYS = [Account.from_key(bytes([i]) * 32) for i in (1, 2, 3)]

addresses = st.binary(min_size=20, max_size=20).map(lambda b: to_checksum_address(b))
storage_keys = st.binary(min_size=32, max_size=32).map(lambda b: "0x" + b.hex())
access_lists = st.lists(
    st.fixed_dictionaries({"address": addresses, "storageKeys": st.lists(storage_keys, max_size=3)}), max_size=3
)
u256 = st.integers(min_value=0, max_value=2**256 - 1)
fees = st.integers(min_value=0, max_value=2**128)


@st.composite
def tx_dicts(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["legacy", "legacy155", "eip2930", "eip1559"]))
    tx: dict[str, Any] = {
        "nonce": draw(st.integers(min_value=0, max_value=2**64 - 2)),
        "gas": draw(st.integers(min_value=21000, max_value=2**63)),
        "value": draw(u256),
        "data": draw(st.binary(max_size=300)),
    }
    to = draw(st.one_of(st.none(), addresses))
    if to is not None:
        tx["to"] = to
    if kind != "legacy":
        tx["chainId"] = draw(st.integers(min_value=1, max_value=2**32))
    if kind in ("legacy", "legacy155", "eip2930"):
        tx["gasPrice"] = draw(fees)
    if kind == "eip2930":
        tx["type"] = 1
    if kind == "eip1559":
        tx["type"] = 2
        tx["maxPriorityFeePerGas"] = draw(fees)
        tx["maxFeePerGas"] = tx["maxPriorityFeePerGas"] + draw(fees)
    if kind in ("eip2930", "eip1559"):
        tx["accessList"] = draw(access_lists)
    return tx


def node_json(tx: dict[str, Any], signed: Any, sender: str, *, y_parity_field: bool = True) -> dict[str, Any]:
    """What a node puts in a full ``newPendingTransactions`` notification."""
    tx_type = tx.get("type", 0)
    obj: dict[str, Any] = {
        "type": hex(tx_type),
        "hash": "0x" + signed.hash.hex(),
        "from": sender.lower(),
        "nonce": hex(tx["nonce"]),
        "gas": hex(tx["gas"]),
        "to": tx["to"].lower() if "to" in tx else None,
        "value": hex(tx["value"]),
        "input": "0x" + tx["data"].hex(),
        "r": hex(signed.r),
        "s": hex(signed.s),
        "v": hex(signed.v),
        "blockHash": None,
        "blockNumber": None,
        "transactionIndex": None,
    }
    if "chainId" in tx:
        obj["chainId"] = hex(tx["chainId"])
    if "gasPrice" in tx:
        obj["gasPrice"] = hex(tx["gasPrice"])
    if tx_type == 2:
        obj["maxFeePerGas"] = hex(tx["maxFeePerGas"])
        obj["maxPriorityFeePerGas"] = hex(tx["maxPriorityFeePerGas"])
        obj["gasPrice"] = hex(tx["maxFeePerGas"])  # what geth reports for a pending 1559 tx
    if tx_type in (1, 2):
        obj["accessList"] = [
            {"address": e["address"].lower(), "storageKeys": list(e["storageKeys"])} for e in tx["accessList"]
        ]
        if y_parity_field:
            obj["yParity"] = hex(signed.v)
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tx=tx_dicts(), key=st.sampled_from(KEYS), y_parity_field=st.booleans())
def test_reencoding_equals_eth_account_raw_bytes(tx: dict[str, Any], key: Any, y_parity_field: bool) -> None:
    signed = key.sign_transaction(tx)
    obj = node_json(tx, signed, key.address, y_parity_field=y_parity_field)
    decoded = decode_pending_tx(obj, seen_at=1.5, first_seen_ns=7, chain_id=tx.get("chainId"))
    assert decoded.raw == bytes(signed.raw_transaction)
    assert decoded.hash == bytes(signed.hash) == keccak256(decoded.raw)
    assert decoded.type == tx.get("type", 0)
    assert decoded.chain_id == tx.get("chainId")
    assert decoded.nonce == tx["nonce"]
    assert decoded.value == tx["value"]
    assert decoded.gas == tx["gas"]
    assert decoded.input == tx["data"]
    assert decoded.to == (tx["to"].lower() if "to" in tx else None)
    assert decoded.sender == key.address.lower()
    assert (decoded.seen_at, decoded.first_seen_ns) == (1.5, 7)
    if decoded.type == 2:
        assert decoded.max_fee_per_gas == tx["maxFeePerGas"]
        assert decoded.max_priority_fee_per_gas == tx["maxPriorityFeePerGas"]
        assert decoded.gas_price is None
    else:
        assert decoded.gas_price == tx["gasPrice"]


def _signed_obj(tx_type: int = 2, chain_id: int = 1) -> dict[str, Any]:
    key = KEYS[0]
    tx: dict[str, Any] = {"nonce": 7, "gas": 200_000, "to": to_checksum_address("0x" + "ab" * 20),
                          "value": 10**17, "data": bytes.fromhex("7ff36ab5") + bytes(128), "chainId": chain_id}
    if tx_type == 2:
        tx.update(type=2, maxFeePerGas=30 * 10**9, maxPriorityFeePerGas=2 * 10**9, accessList=[])
    elif tx_type == 1:
        tx.update(type=1, gasPrice=20 * 10**9, accessList=[])
    else:
        tx.update(gasPrice=20 * 10**9)
    return node_json(tx, key.sign_transaction(tx), key.address)


def test_valid_object_decodes() -> None:
    for t in (0, 1, 2):
        assert decode_pending_tx(_signed_obj(t), chain_id=1).type == t


def test_data_field_named_data_is_accepted() -> None:
    obj = _signed_obj()
    obj["data"] = obj.pop("input")
    assert decode_pending_tx(obj).input[:4] == bytes.fromhex("7ff36ab5")


def test_pre_eip155_legacy_has_no_chain_and_passes_any_expected_chain() -> None:
    key = KEYS[1]
    tx = {"nonce": 0, "gas": 21000, "gasPrice": 10**9, "to": to_checksum_address("0x" + "01" * 20),
          "value": 1, "data": b""}
    signed = key.sign_transaction(tx)
    assert signed.v in (27, 28)
    decoded = decode_pending_tx(node_json(tx, signed, key.address), chain_id=31337)
    assert decoded.chain_id is None
    assert decoded.raw == bytes(signed.raw_transaction)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hash", None),
        ("hash", "0x1234"),
        ("nonce", 7),
        ("nonce", "7"),
        ("nonce", "0x"),
        ("nonce", " 0x7"),
        ("nonce", "0x7 "),
        ("nonce", "0x_7"),
        ("nonce", "-0x7"),
        ("nonce", "0x" + "f" * 17),  # above 2**64
        ("value", "0x" + "1" * 65),
        ("value", True),
        ("gas", None),
        ("input", "0x0"),
        ("input", "0x7f f3"),
        ("input", "7ff3"),
        ("input", "0xzz"),
        ("to", "0x1234"),
        ("to", 5),
        ("from", None),
        ("r", "0x0"),
        ("s", "0x" + "f" * 64),
        ("v", "0x5"),
        ("yParity", "0x2"),
        ("chainId", None),
        ("maxFeePerGas", None),
        ("accessList", {}),
        ("accessList", [{"address": "0x" + "11" * 20}]),
        ("accessList", [{"address": "0x11", "storageKeys": []}]),
        ("accessList", [{"address": "0x" + "11" * 20, "storageKeys": ["0x01"]}]),
        ("type", 2),
    ],
)
def test_bad_fields_are_a_named_rejection(field: str, value: object) -> None:
    obj = _signed_obj(2)
    if field == "v":
        obj.pop("yParity")
    if value is None:
        obj.pop(field, None)
    else:
        obj[field] = value
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)
    assert info.value.reason == "bad_fields"


@pytest.mark.parametrize("obj", [None, [], "0x00", 5])
def test_non_object_is_bad_fields(obj: object) -> None:
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)  # type: ignore[arg-type]
    assert info.value.reason == "bad_fields"


def test_legacy_v_below_eip155_range_is_bad_fields() -> None:
    obj = _signed_obj(0)
    obj["v"] = "0x1"
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)
    assert info.value.reason == "bad_fields"


def test_legacy_chain_id_field_disagreeing_with_v_is_bad_fields() -> None:
    obj = _signed_obj(0, chain_id=1)
    obj["chainId"] = "0x5"
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)
    assert info.value.reason == "bad_fields"


@pytest.mark.parametrize("tx_type", ["0x3", "0x4", "0x7e", "0x64"])
def test_blob_7702_and_unknown_types_are_unsupported(tx_type: str) -> None:
    obj = _signed_obj(2)
    obj["type"] = tx_type
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)
    assert info.value.reason == "unsupported_type"


@pytest.mark.parametrize("tx_type", [0, 1, 2])
def test_other_chain_is_wrong_chain(tx_type: int) -> None:
    obj = _signed_obj(tx_type, chain_id=1)
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj, chain_id=31337)
    assert info.value.reason == "wrong_chain"


@pytest.mark.parametrize(
    ("field", "value"),
    [("value", "0x1"), ("nonce", "0x8"), ("input", "0x"), ("maxFeePerGas", "0x1"), ("from", None),
     ("hash", "0x" + "00" * 32), ("yParity", "0x0"), ("to", None)],
)
def test_tampered_field_is_hash_mismatch(field: str, value: str | None) -> None:
    obj = _signed_obj(2)
    if field == "yParity":
        value = "0x0" if obj["yParity"] == "0x1" else "0x1"
    if field == "from":
        # `from` is not covered by the hash (it is not recovered): a lying node
        # can only mislabel the sender, which is documented; the rest is bound.
        obj["from"] = "0x" + "99" * 20
        assert decode_pending_tx(obj).sender == "0x" + "99" * 20
        return
    obj[field] = value
    with pytest.raises(DecodeError) as info:
        decode_pending_tx(obj)
    assert info.value.reason == "hash_mismatch"


def test_decode_rate_on_a_realistic_swap_frame() -> None:
    """A type-2 swapExactETHForTokens-sized frame; the floor is lenient (shared CI cores)."""
    obj = _signed_obj(2)
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        decode_pending_tx(obj, chain_id=1)
    rate = n / (time.perf_counter() - start)
    assert rate > 2000, f"decode rate {rate:.0f}/s"
