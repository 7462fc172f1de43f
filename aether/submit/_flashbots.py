"""The ``X-Flashbots-Signature`` header.

Flashbots (and the builders that copied its auth) identify a searcher by a key
separate from the one that signs transactions. The header is
``<address>:<signature>`` where the signature is an EIP-191 ``personal_sign``
over the *text* ``0x`` + hex(keccak256(body)) of the exact bytes sent, as
go-ethereum's ``crypto.Keccak256Hash(body).Hex()`` prints it (lowercase, with
``0x``). flashbots/go-utils ``signature.Verify`` checks the same.
"""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import SignableMessage, encode_defunct
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

__all__ = ["HEADER", "flashbots_signature", "recover_flashbots_signer"]

HEADER = "X-Flashbots-Signature"


def _message(body: bytes) -> SignableMessage:
    return encode_defunct(text="0x" + keccak(body).hex())


def flashbots_signature(auth: LocalAccount, body: bytes) -> str:
    """The header value for ``body``: ``address:0x<65-byte signature>``."""
    signed = auth.sign_message(_message(body))
    return f"{auth.address}:0x{bytes(signed.signature).hex()}"


def recover_flashbots_signer(header: str | None, body: bytes) -> str | None:
    """The checksummed address that signed ``body``, or None if the header is bad.

    The address before the colon must match the recovered one.
    """
    if not header:
        return None
    address, sep, sig = header.strip().partition(":")
    if not sep or not address.startswith("0x") or len(address) != 42:
        return None
    try:
        recovered = Account.recover_message(_message(body), signature=bytes.fromhex(sig.removeprefix("0x")))
    except Exception:  # noqa: BLE001 - any malformed signature is just "bad"
        return None
    return recovered if recovered.lower() == address.lower() else None
