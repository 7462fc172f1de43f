"""Victim routes no decoder was written for: Uniswap's Universal Router and a direct multi-pair caller.

Deployed on top of :func:`aether.devnet.deploy` (its own module so the base
deployment stays as it was):

* **Universal Router** 2.1.0, the real bytecode from npm
  (``@uniswap/universal-router/artifacts``), constructed with the devnet's WETH and
  the ``uniswap`` DEX's V2 factory and pair init-code hash, and the V3 factory and
  pool init-code hash when V3 is deployed (V4, the migrator and Across are zero). Its ``permit2`` is
  ``DevPermit2`` (``contracts/DevPermit2.sol``): Permit2's bytecode is not on npm,
  so a stand-in with Permit2's ``approve``/``transferFrom`` takes its place.
* **MultiSwap** (``contracts/MultiSwap.sol``): calls pairs directly, one pair's
  output sent to the next, across both DEXes in one transaction.

With the V3 devnet deployed first (:mod:`aether.devnet._v3`), the Universal Router
is also wired to the V3 factory and its pool init-code hash, so its
``V3_SWAP_EXACT_IN`` command trades the seeded V3 pools (:class:`V3RouteKind`).

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
    "ALL_ROUTE_KINDS",
    "AnyRouteKind",
    "Command",
    "RouteContracts",
    "RouteKind",
    "V3RouteKind",
    "deploy_route_contracts",
    "encode_execute",
    "encode_multiswap",
    "encode_v3_path",
    "route_kind",
    "unwrap_weth",
    "v2_swap_exact_in",
    "v2_swap_exact_out",
    "v3_swap_exact_in",
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


class V3RouteKind(enum.StrEnum):
    """Which contract a victim of a Uniswap V3 pool calls (coverage rows beside :class:`RouteKind`).

    Its own enum rather than more :class:`RouteKind` members: a devnet without V3
    (``aether devnet --no-v3``) still offers every :class:`RouteKind`, and code that
    iterates :class:`RouteKind` keeps meaning "the V2 routes".
    """

    #: SwapRouter ``exactInputSingle`` (one pool) or ``exactInput`` (a multi-hop path).
    SWAP_ROUTER = "v3_swap_router"
    #: Universal Router ``V3_SWAP_EXACT_IN`` (with ``WRAP_ETH``/``UNWRAP_WETH`` for ETH ends).
    UNIVERSAL_ROUTER = "universal_router_v3"


#: A route kind of either family.
AnyRouteKind = RouteKind | V3RouteKind
#: Every route kind a victim may take, V2 first (the order of the coverage table).
ALL_ROUTE_KINDS: tuple[AnyRouteKind, ...] = (*RouteKind, *V3RouteKind)


def route_kind(name: str) -> AnyRouteKind:
    """The route kind called ``name`` in either family.

    Raises:
        ValueError: no route kind has that name.
    """
    for family in (RouteKind, V3RouteKind):
        try:
            return family(name)
        except ValueError:
            continue
    raise ValueError(f"unknown route kind {name!r}; expected one of {', '.join(k.value for k in ALL_ROUTE_KINDS)}")


class Command(enum.IntEnum):
    """The Universal Router commands the devnet uses (``libraries/Commands.sol``)."""

    V3_SWAP_EXACT_IN = 0x00
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
    #: The V3 factory the Universal Router is wired to (None: its V3 commands cannot trade).
    universal_v3_factory: str | None = None


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


def encode_v3_path(tokens: Sequence[str], fees: Sequence[int]) -> bytes:
    """A V3 ``path``: token (20 bytes), fee (3 bytes), token, ... (``libraries/Path.sol``).

    Raises:
        ValueError: not one fee fewer than tokens, or a fee outside uint24.
    """
    if len(tokens) != len(fees) + 1 or not fees:
        raise ValueError(f"encode_v3_path: {len(tokens)} tokens need {len(tokens) - 1} fees, got {len(fees)}")
    out = bytearray(bytes.fromhex(tokens[0].removeprefix("0x")))
    for fee, token in zip(fees, tokens[1:], strict=True):
        if not 0 <= fee < 2**24:
            raise ValueError(f"encode_v3_path: fee {fee} is not a uint24")
        out += fee.to_bytes(3, "big") + bytes.fromhex(token.removeprefix("0x"))
    return bytes(out)


def v3_swap_exact_in(recipient: str, amount_in: int, min_out: int, path: bytes, payer_is_user: bool) -> tuple[int, bytes]:
    return Command.V3_SWAP_EXACT_IN, abi_encode(
        ["address", "uint256", "uint256", "bytes", "bool"], [recipient, amount_in, min_out, path, payer_is_user]
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


async def deploy_route_contracts(
    rpc: RpcClient, info: DevnetInfo, *, v3_factory: str | None = None, v3_init_code_hash: str | None = None
) -> RouteContracts:
    """Deploy DevPermit2, the Universal Router and MultiSwap; approve every victim's tokens to them.

    With ``v3_factory`` and ``v3_init_code_hash`` (the V3 devnet, deployed first) the
    Universal Router can also trade V3 pools; without them its V3 commands revert.

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
    if (v3_factory is None) != (v3_init_code_hash is None):
        raise ValueError("deploy_route_contracts: v3_factory and v3_init_code_hash go together")
    v3_ich = bytes.fromhex(v3_init_code_hash[2:]) if v3_init_code_hash is not None else bytes(32)
    params = (permit2, info.weth, uni.factory, v3_factory or _ZERO, bytes.fromhex(uni.init_code_hash[2:]), v3_ich,
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
    return RouteContracts(permit2=permit2, universal_router=router, multiswap=multiswap,
                          universal_v3_factory=v3_factory.lower() if v3_factory is not None else None)
