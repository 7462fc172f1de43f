"""The hand-written hot-path pieces are byte-identical to the libraries they replace.

Each replacement was justified by a bench figure (docs/performance.md); these
tests hold it equal to the reference over thousands of seeded random inputs:
the EIP-1559 signer against eth-account, the RLP encoder against pyrlp, the
``swapExactTokensForTokens`` encoder against eth-abi, keccak against pycryptodome.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from Crypto.Hash import keccak as _pycryptodome_keccak
from eth_account import Account
from eth_utils import to_checksum_address
from rlp.codec import encode_raw

from aether.bundle import Eip1559Signer
from aether.chain import encode_signed_tx, keccak256
from aether.chain._tx import encode_1559_parts, encode_signed_1559, rlp_encode
from aether.dex import encode_swap, encode_swap_exact_tokens_for_tokens

_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _uint(rng: random.Random) -> int:
    """Mostly realistic sizes, with the edges (0, 1, 127, 128, 2**256-1) thrown in."""
    roll = rng.random()
    if roll < 0.1:
        return rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**64 - 1, 2**256 - 1))
    return rng.getrandbits(rng.choice((8, 16, 32, 64, 100, 128, 256)))


def _data(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((0, 1, 1, 4, 55, 56, 68, 260, 1024, rng.randrange(0, 3000))))


def test_signer_matches_eth_account_over_thousands_of_random_transactions() -> None:
    rng = random.Random(1559)
    checked = 0
    for _ in range(25):
        account = Account.from_key(rng.randrange(1, _N).to_bytes(32, "big"))
        signer = Eip1559Signer(account)
        for _ in range(80):
            prio = rng.choice((0, 1, rng.getrandbits(40), rng.getrandbits(64)))
            fields = {
                "chain_id": rng.choice((1, 5, 31337, rng.getrandbits(32))),
                "nonce": rng.choice((0, 1, 127, 128, rng.getrandbits(40))),
                "max_priority_fee_per_gas": prio,
                "max_fee_per_gas": prio + rng.choice((0, rng.getrandbits(40))),
                "gas": rng.choice((21_000, 144_000, rng.getrandbits(24) + 1)),
                "to": rng.randbytes(20),
                "value": rng.choice((0, rng.getrandbits(80))),
                "data": _data(rng),
            }
            raw, tx_hash = signer.sign(**fields)
            ref = account.sign_transaction({
                "type": 2, "chainId": fields["chain_id"], "nonce": fields["nonce"],
                "maxPriorityFeePerGas": prio, "maxFeePerGas": fields["max_fee_per_gas"], "gas": fields["gas"],
                "to": to_checksum_address(fields["to"]), "value": fields["value"], "data": fields["data"],
                "accessList": [],
            })
            assert raw == bytes(ref.raw_transaction)
            assert tx_hash == bytes(ref.hash) == keccak256(raw)
            checked += 1
    assert checked == 2000


def test_signer_refuses_what_eth_account_refuses() -> None:
    signer = Eip1559Signer(Account.from_key(b"\x01" * 32))
    ok = dict(chain_id=1, nonce=0, max_priority_fee_per_gas=1, max_fee_per_gas=2, gas=21_000, to=b"\x11" * 20,
              value=0, data=b"")
    signer.sign(**ok)  # type: ignore[arg-type]
    for bad in ({"to": b"\x11" * 19}, {"nonce": -1}, {"max_fee_per_gas": 0}, {"value": -5}):
        with pytest.raises((ValueError, OverflowError)):
            signer.sign(**{**ok, **bad})  # type: ignore[arg-type]
    assert "42" * 32 not in repr(Eip1559Signer(Account.from_key("0x" + "42" * 32)))


def test_rlp_matches_pyrlp_on_random_transactions() -> None:
    rng = random.Random(7)
    for i in range(3000):
        tx_type = i % 3
        access = [
            [rng.randbytes(20), [rng.randbytes(32) for _ in range(rng.randrange(0, 4))]]
            for _ in range(rng.choice((0, 0, 1, 3)))
        ] if tx_type else []
        fields = dict(chain_id=rng.getrandbits(32), nonce=_uint(rng) % 2**64, gas=_uint(rng) % 2**64,
                      to=rng.choice((b"", rng.randbytes(20))), value=_uint(rng), data=_data(rng),
                      v=rng.randrange(2) if tx_type else 37 + rng.randrange(2), r=rng.randrange(1, _N),
                      s=rng.randrange(1, _N), gas_price=_uint(rng), max_fee_per_gas=_uint(rng),
                      max_priority_fee_per_gas=_uint(rng), access_list=access)
        ours = encode_signed_tx(tx_type, **fields)  # type: ignore[arg-type]

        def be(n: int) -> bytes:
            return n.to_bytes((n.bit_length() + 7) // 8, "big")

        f = fields
        if tx_type == 0:
            ref = encode_raw([be(f["nonce"]), be(f["gas_price"]), be(f["gas"]), f["to"], be(f["value"]), f["data"],
                              be(f["v"]), be(f["r"]), be(f["s"])])
        elif tx_type == 1:
            ref = b"\x01" + encode_raw([be(f["chain_id"]), be(f["nonce"]), be(f["gas_price"]), be(f["gas"]), f["to"],
                                        be(f["value"]), f["data"], access, be(f["v"]), be(f["r"]), be(f["s"])])
        else:
            ref = b"\x02" + encode_raw([be(f["chain_id"]), be(f["nonce"]), be(f["max_priority_fee_per_gas"]),
                                        be(f["max_fee_per_gas"]), be(f["gas"]), f["to"], be(f["value"]), f["data"],
                                        access, be(f["v"]), be(f["r"]), be(f["s"])])
        assert ours == ref
    # Nested and long items, through the generic encoder.
    for _ in range(500):
        item = [rng.randbytes(rng.randrange(0, 70)), [rng.randbytes(rng.randrange(0, 3)) for _ in range(30)],
                [], [[rng.randbytes(60)]]]
        assert rlp_encode(item) == encode_raw(item)
    # The other shapes the generic encoder takes: bytearrays and tuples, short and long.
    others: list[Any] = [[bytearray(b"\x01" * 60), (b"a", bytearray(b"\x7f"), ())], (bytearray(),), bytearray(b"\x80")]
    for other in others:
        assert rlp_encode(other) == encode_raw(other)
    assert encode_1559_parts(1, 0, 0, 0, 0, b"\x00" * 20, 0, b"")[0][:1] == b"\x02"


def test_the_signers_shared_field_encoding_matches_pyrlp() -> None:
    """The signer encodes the nine fields once for the payload and the envelope: both byte-equal
    to pyrlp's, with r and s of every length (leading zero bytes dropped) and both parities."""
    rng = random.Random(1560)
    for _ in range(3000):
        f = dict(chain_id=rng.getrandbits(32), nonce=_uint(rng) % 2**64, max_priority_fee_per_gas=_uint(rng),
                 max_fee_per_gas=_uint(rng), gas=_uint(rng) % 2**64, to=rng.randbytes(20), value=_uint(rng),
                 data=_data(rng))
        payload, fields = encode_1559_parts(**f)  # type: ignore[arg-type]
        r, s = (rng.getrandbits(rng.choice((8, 120, 248, 255, 256))) for _ in range(2))
        y = rng.randrange(2)
        ours = encode_signed_1559(fields, y, r.to_bytes(32, "big"), s.to_bytes(32, "big"))

        def be(n: int) -> bytes:
            return n.to_bytes((n.bit_length() + 7) // 8, "big")

        assert payload == b"\x02" + encode_raw([be(f["chain_id"]), be(f["nonce"]),  # type: ignore[arg-type]
                                                be(f["max_priority_fee_per_gas"]), be(f["max_fee_per_gas"]),  # type: ignore[arg-type]
                                                be(f["gas"]), f["to"], be(f["value"]), f["data"], []])  # type: ignore[arg-type]

        ref = b"\x02" + encode_raw([be(f["chain_id"]), be(f["nonce"]), be(f["max_priority_fee_per_gas"]),  # type: ignore[arg-type]
                                    be(f["max_fee_per_gas"]), be(f["gas"]), f["to"], be(f["value"]), f["data"],  # type: ignore[arg-type]
                                    [], be(y), be(r), be(s)])
        assert ours == ref
        assert ours == encode_signed_tx(2, v=y, r=r, s=s, access_list=[], **f)  # type: ignore[arg-type]


def test_exact_tokens_encoder_matches_eth_abi() -> None:
    rng = random.Random(38)
    for _ in range(3000):
        path = ["0x" + rng.randbytes(20).hex() for _ in range(rng.randrange(2, 6))]
        args = dict(amount_in=_uint(rng), amount_out=_uint(rng), path=path, to="0x" + rng.randbytes(20).hex(),
                    deadline=_uint(rng))
        ref, _ = encode_swap("swapExactTokensForTokens", **args)  # type: ignore[arg-type]
        ours = encode_swap_exact_tokens_for_tokens(args["amount_in"], args["amount_out"], path, args["to"],
                                                   args["deadline"])
        assert ours == ref
    for bad in (-1, 2**256):
        with pytest.raises(ValueError):
            encode_swap_exact_tokens_for_tokens(bad, 1, path, path[0], 1)
    with pytest.raises(ValueError):
        encode_swap_exact_tokens_for_tokens(1, 1, ["0x1234"], path[0], 1)


def test_keccak_matches_pycryptodome() -> None:
    rng = random.Random(256)
    for _ in range(3000):
        data = rng.randbytes(rng.randrange(0, 2000))
        assert keccak256(data) == _pycryptodome_keccak.new(digest_bits=256, data=data).digest()
