"""One-time preparation of the searcher account: router approvals.

Phase 1 backruns are plain transactions from the searcher account that call a
Router02 (or, for a V3 leg, a ``kind = "v3"`` DEX's SwapRouter ``exactInputSingle``)
with WETH or a token as input, so every configured router, V2 and V3 alike, needs
an allowance on WETH and on each tradable token. A real searcher grants them once, on purpose;
``aether run`` never does it silently. This module is that explicit step (the
devnet calls it for its fresh searcher account).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from ._errors import BadNodeData, RpcError
from .chain import RpcClient
from .config import ChainConfig
from .quantity import hex_quantity

__all__ = ["MAX_UINT256", "approve_routers", "missing_approvals", "prepare_main"]

MAX_UINT256 = 2**256 - 1
# An allowance this large is "already in place": max approvals only go down by
# what is spent, and no account spends 2**255 base units.
_ENOUGH = 2**255
_APPROVE = keccak(text="approve(address,uint256)")[:4]
_ALLOWANCE = keccak(text="allowance(address,address)")[:4]
_FALLBACK_GAS = 100_000
_TIP_WEI = 10**9


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


async def _survey(
    rpc: RpcClient, owner: str, chain: ChainConfig, tokens: Sequence[str] | None
) -> tuple[list[tuple[str, str]], int, int, int]:
    """(asset, router) pairs still lacking a max allowance, plus chain id, pending nonce, base fee."""
    wanted = [chain.weth, *(t.address for t in chain.tokens)] if tokens is None else [chain.weth, *tokens]
    assets = list(dict.fromkeys(a.lower() for a in wanted))
    routers = list(dict.fromkeys(d.router.lower() for d in chain.dexes))
    pairs = [(asset, router) for asset in assets for router in routers]
    calls: list[tuple[str, Sequence[Any]]] = [
        ("eth_call", [{"to": asset, "data": _hex(_ALLOWANCE + abi_encode(["address", "address"], [owner, router]))},
                      "latest"])
        for asset, router in pairs
    ]
    calls += [
        ("eth_chainId", []),
        ("eth_getTransactionCount", [owner, "pending"]),
        ("eth_getBlockByNumber", ["latest", False]),
    ]
    replies = await rpc.batch(calls)
    for r in replies:
        if isinstance(r, RpcError):
            raise r
    try:
        allowances = [int(abi_decode(["uint256"], bytes.fromhex(r[2:]))[0]) for r in replies[: len(pairs)]]
        chain_id = hex_quantity(replies[-3])
        nonce = hex_quantity(replies[-2])
        base_fee = hex_quantity(replies[-1].get("baseFeePerGas", "0x0"))
    except (ValueError, TypeError, AttributeError, IndexError) as exc:
        raise BadNodeData(f"approve_routers: unexpected node answer ({type(exc).__name__})") from exc
    todo = [p for p, allowance in zip(pairs, allowances, strict=True) if allowance < _ENOUGH]
    return todo, chain_id, nonce, base_fee


async def missing_approvals(rpc: RpcClient, owner: str, chain: ChainConfig) -> list[tuple[str, str]]:
    """The (asset, router) pairs that still need an approval from ``owner``."""
    todo, *_ = await _survey(rpc, owner, chain, None)
    return todo


async def approve_routers(
    rpc: RpcClient,
    account: LocalAccount,
    chain: ChainConfig,
    *,
    tokens: Sequence[str] | None = None,
) -> list[str]:
    """Grant every configured router a max allowance on WETH and the tokens.

    Allowances already at (near) the maximum are skipped, so running it twice
    sends nothing the second time. Transactions are EIP-1559, signed locally
    and sent with ``eth_sendRawTransaction``; this function does not wait for
    them to be mined (the caller mines or waits for receipts).

    Args:
        rpc: the node.
        account: the searcher account (its key never leaves this process).
        chain: WETH and the DEXes whose routers get the allowance.
        tokens: token addresses to approve besides WETH; default: ``chain.tokens``.

    Returns:
        The hashes (0x-hex) of the approval transactions sent, in nonce order.

    Raises:
        RpcError: the node refused a transaction.
        BadNodeData: the node's answers are not of the expected shape.
    """
    owner = account.address
    todo, chain_id, nonce, base_fee = await _survey(rpc, owner, chain, tokens)
    if not todo:
        return []
    datas = [_APPROVE + abi_encode(["address", "uint256"], [router, MAX_UINT256]) for _, router in todo]
    estimates = await rpc.batch(
        [("eth_estimateGas", [{"from": owner, "to": asset, "data": _hex(data)}]) for (asset, _), data in zip(todo, datas, strict=True)]
    )
    raws: list[str] = []
    for i, ((asset, _), data) in enumerate(zip(todo, datas, strict=True)):
        est = estimates[i]
        gas = _FALLBACK_GAS if isinstance(est, RpcError) or not isinstance(est, str) else hex_quantity(est) * 13 // 10
        signed = account.sign_transaction(
            {
                "type": 2,
                "chainId": chain_id,
                "nonce": nonce + i,
                "to": to_checksum_address(asset),
                "value": 0,
                "data": data,
                "gas": gas,
                "maxPriorityFeePerGas": _TIP_WEI,
                "maxFeePerGas": 2 * base_fee + _TIP_WEI,
            }
        )
        raws.append(_hex(signed.raw_transaction))
    results = await rpc.batch([("eth_sendRawTransaction", [raw]) for raw in raws])
    hashes: list[str] = []
    for r in results:
        if isinstance(r, RpcError):
            raise r
        hashes.append(str(r))
    return hashes


def prepare_main(*, send: bool) -> int:
    """``aether prepare [--yes]``: list missing approvals; with ``--yes`` send them."""
    import sys

    import trio

    from ._errors import ConfigError, NodeError
    from ._log import register_secret
    from .chain import open_rpc
    from .config import Settings
    from .keys import load_key_file

    try:
        settings = Settings.from_env()
        if settings.signer_key_file is None:
            raise ConfigError("AETHER_SIGNER_KEY_FILE is not set: prepare needs the searcher account")
        account = load_key_file(settings.signer_key_file, "AETHER_SIGNER_KEY_FILE")
    except ConfigError as exc:
        print(f"aether: error: {exc}", file=sys.stderr)
        return 2
    register_secret(account.key.hex())
    names = {settings.chain.weth: "WETH", **{t.address: t.symbol or t.address for t in settings.chain.tokens}}
    routers = {d.router: d.name for d in settings.chain.dexes}

    async def go() -> int:
        async with open_rpc(settings.rpc_url, timeout=settings.rpc_timeout_s) as rpc:
            todo = await missing_approvals(rpc, account.address, settings.chain)
            for asset, router in todo:
                print(f"missing: {names.get(asset, asset)} -> {routers.get(router, router)} router")
            if not todo:
                print(f"{account.address}: every router already approved")
                return 0
            if not send:
                print(f"{len(todo)} approval(s) missing; run `aether prepare --yes` to send them")
                return 1
            hashes = await approve_routers(rpc, account, settings.chain)
            for h in hashes:
                print(f"sent {h}")
            return 0

    try:
        return trio.run(go)
    except NodeError as exc:
        print(f"aether: error: AETHER_RPC_URL: {exc}", file=sys.stderr)
        return 3
