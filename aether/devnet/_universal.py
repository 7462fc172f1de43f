"""Victim routes no decoder was written for: Uniswap's Universal Router and a direct multi-pair caller.

Deployed on top of :func:`aether.devnet.deploy` (its own module so the base
deployment stays as it was):

* **Universal Router** 2.1.0, the real bytecode from npm
  (``@uniswap/universal-router/artifacts``), constructed with the devnet's WETH and
  the ``uniswap`` DEX's V2 factory and pair init-code hash (V3, V4, the migrator
  and Across are zero: no V3 pool is deployed here). Its ``permit2`` is
  ``DevPermit2`` (``contracts/DevPermit2.sol``): Permit2's bytecode is not on npm,
  so a stand-in with Permit2's ``approve``/``transferFrom`` takes its place.
* **MultiSwap** (``contracts/MultiSwap.sol``): calls pairs directly, one pair's
  output sent to the next, across both DEXes in one transaction.

Every victim approves its tokens to DevPermit2 (and through it to the router) and
to MultiSwap once, here, so traffic can use any route kind. The command
encoders below build ``execute(commands, inputs, deadline)`` calldata the way
Uniswap's SDK does (``WRAP_ETH``, ``V2_SWAP_EXACT_IN``/``_OUT``, ``UNWRAP_WETH``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from eth_abi import encode as abi_encode

from .._errors import AetherError, ConfigError, RpcError
from ..chain import RpcClient
from ._anvil import find_in_node_modules
from ._deploy import (
    DevnetInfo,
    _deployer_account,
    _Plan,
    _send_and_mine,
    _Signer,
    load_artifact,
    selector,
    victim_account,
)

__all__ = [
    "ADDRESS_THIS",
    "MSG_SENDER",
    "Command",
    "RouteContracts",
    "RouteKind",
    "deploy_route_contracts",
    "encode_execute",
    "encode_multiswap",
    "unwrap_weth",
    "v2_swap_exact_in",
    "v2_swap_exact_out",
    "wrap_eth",
]

#: The router's recipient aliases (v4-periphery ActionConstants): the caller, the router itself.
MSG_SENDER = "0x0000000000000000000000000000000000000001"
ADDRESS_THIS = "0x0000000000000000000000000000000000000002"
_MAX160 = 2**160 - 1
_MAX48 = 2**48 - 1
_ZERO = "0x" + "00" * 20


class RouteKind(enum.StrEnum):
    """Which contract a victim calls (the coverage table's rows)."""

    ROUTER02 = "router02"
    UNIVERSAL_ROUTER = "universal_router"
    DIRECT = "direct_multi_pair"


class Command(enum.IntEnum):
    """The Universal Router commands the devnet uses (``libraries/Commands.sol``)."""

    V2_SWAP_EXACT_IN = 0x08
    V2_SWAP_EXACT_OUT = 0x09
    WRAP_ETH = 0x0B
    UNWRAP_WETH = 0x0C


@attrs.frozen
class RouteContracts:
    """Where the extra route contracts are (lowercase hex)."""

    permit2: str
    universal_router: str
    multiswap: str
    #: The DEX whose V2 factory the Universal Router is wired to.
    universal_dex: str = "uniswap"


def _universal_router_artifact() -> tuple[list[Any], bytes]:
    path = find_in_node_modules("@uniswap/universal-router/artifacts/contracts/UniversalRouter.sol/UniversalRouter.json")
    if path is None or not path.is_file():
        raise ConfigError("devnet: @uniswap/universal-router is not installed; run `npm ci --ignore-scripts`")
    data = json.loads(Path(path).read_text())
    return data["abi"], bytes.fromhex(data["bytecode"].removeprefix("0x"))


def wrap_eth(recipient: str, amount: int) -> tuple[int, bytes]:
    return Command.WRAP_ETH, abi_encode(["address", "uint256"], [recipient, amount])


def unwrap_weth(recipient: str, amount_min: int) -> tuple[int, bytes]:
    return Command.UNWRAP_WETH, abi_encode(["address", "uint256"], [recipient, amount_min])


def v2_swap_exact_in(recipient: str, amount_in: int, min_out: int, path: Sequence[str], payer_is_user: bool) -> tuple[int, bytes]:
    return Command.V2_SWAP_EXACT_IN, abi_encode(
        ["address", "uint256", "uint256", "address[]", "bool"], [recipient, amount_in, min_out, list(path), payer_is_user]
    )


def v2_swap_exact_out(recipient: str, amount_out: int, max_in: int, path: Sequence[str], payer_is_user: bool) -> tuple[int, bytes]:
    return Command.V2_SWAP_EXACT_OUT, abi_encode(
        ["address", "uint256", "uint256", "address[]", "bool"], [recipient, amount_out, max_in, list(path), payer_is_user]
    )


def encode_execute(commands: Sequence[tuple[int, bytes]], deadline: int) -> bytes:
    """``execute(bytes commands, bytes[] inputs, uint256 deadline)`` calldata."""
    return selector("execute(bytes,bytes[],uint256)") + abi_encode(
        ["bytes", "bytes[]", "uint256"], [bytes(c for c, _ in commands), [i for _, i in commands], deadline]
    )


def encode_multiswap(token_in: str, amount_in: int, pairs: Sequence[str], amounts_out: Sequence[int],
                     zero_for_one: Sequence[bool], to: str) -> bytes:
    """``MultiSwap.swap`` calldata."""
    return selector("swap(address,uint256,address[],uint256[],bool[],address)") + abi_encode(
        ["address", "uint256", "address[]", "uint256[]", "bool[]", "address"],
        [token_in, amount_in, list(pairs), list(amounts_out), list(zero_for_one), to],
    )


async def deploy_route_contracts(rpc: RpcClient, info: DevnetInfo) -> RouteContracts:
    """Deploy DevPermit2, the Universal Router and MultiSwap; approve every victim's tokens to them.

    Raises:
        ConfigError: an artifact is missing.
        AetherError: a transaction was refused or reverted.
    """
    _, permit2_code = load_artifact("DevPermit2")
    _, ms_code = load_artifact("MultiSwap")
    _, ur_code = _universal_router_artifact()
    uni = info.dex("uniswap")
    deployer = _deployer_account(info.seed)
    nonce = await rpc.call("eth_getTransactionCount", [deployer.address, "pending"])
    d = _Signer(deployer, info.chain_id, int(nonce, 16))
    permit2 = d.deploy("deploy DevPermit2", permit2_code, gas=1_500_000)
    params = (permit2, info.weth, uni.factory, _ZERO, bytes.fromhex(uni.init_code_hash[2:]), bytes(32),
              _ZERO, _ZERO, _ZERO, _ZERO)
    struct = "(address,address,address,address,bytes32,bytes32,address,address,address,address)"
    router = d.deploy("deploy UniversalRouter", ur_code + abi_encode([struct], [params]), gas=8_000_000)
    multiswap = d.deploy("deploy MultiSwap", ms_code + abi_encode(["address"], [info.weth]), gas=1_500_000)
    plan = _Plan()
    plan.add(d)
    latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
    block_gas = int(latest["gasLimit"], 16)
    await _send_and_mine(rpc, plan, block_gas=block_gas)
    for name, addr in (("DevPermit2", permit2), ("UniversalRouter", router), ("MultiSwap", multiswap)):
        if await rpc.call("eth_getCode", [addr, "latest"]) in (None, "0x"):
            raise AetherError(f"devnet deploy: {name} has no code at {addr}")

    victims = [victim_account(info.seed, i) for i in range(len(info.victims))]
    replies = await rpc.batch([("eth_getTransactionCount", [v.address, "pending"]) for v in victims])
    approve = selector("approve(address,uint256)")
    p2_approve = selector("approve(address,address,uint160,uint48)")
    second = _Plan()
    for v, n in zip(victims, replies, strict=True):
        if isinstance(n, RpcError):
            raise AetherError(f"devnet deploy: victim nonce unavailable: {n.message}") from n
        s = _Signer(v, info.chain_id, int(n, 16))
        for tok in info.tokens:
            s.send("victim approval to DevPermit2", tok.address, approve + abi_encode(["address", "uint256"], [permit2, 2**256 - 1]), gas=80_000)
            s.send("victim DevPermit2 approval of the router", permit2,
                   p2_approve + abi_encode(["address", "address", "uint160", "uint48"], [tok.address, router, _MAX160, _MAX48]),
                   gas=80_000)
            s.send("victim approval to MultiSwap", tok.address, approve + abi_encode(["address", "uint256"], [multiswap, 2**256 - 1]), gas=80_000)
        second.add(s)
    await _send_and_mine(rpc, second, block_gas=block_gas)
    return RouteContracts(permit2=permit2, universal_router=router, multiswap=multiswap)
