"""Uniswap V3 on the devnet: the real core and periphery bytecode, pools with concentrated positions.

Deployed after the V2 devnet (:func:`aether.devnet.deploy`), on the same
WETH9 and tokens, from the npm artifacts of ``@uniswap/v3-core`` 1.0.1 and
``@uniswap/v3-periphery`` 1.4.4: ``UniswapV3Factory`` (with the 1-bp tier
enabled, as governance did on mainnet), ``SwapRouter``,
``NonfungiblePositionManager`` and ``QuoterV2``. Only ``V3Probe`` is ours
(``contracts/V3Probe.sol``: exact swap deltas by ``eth_call``, exact-liquidity
mints, for the tests that hold the Python math to the pool).

Pools are seeded at several fee tiers around the V2 reference prices, a
little out of line (so V2/V3 and V3/V3 cycles exist), each with five
positions (a wide, a medium and a narrow range around the price, one above and
one below it) and three thin ranges close to the price, so everyday swaps
(the devnet's V3 victims) cross initialised ticks.

The pool init-code hash is keccak of the ``UniswapV3Pool`` creation code in
the npm artifact; it is checked against the constant compiled into the
periphery (``PoolAddress.POOL_INIT_CODE_HASH``, which SwapRouter uses to
authenticate its callbacks) and against ``factory.getPool`` for every pool.

Like the V2 deployment, nothing waits on a receipt between steps: the
deployer's transactions are signed with a local nonce and sent in one plan
(the helpers of :mod:`aether.devnet._deploy`).
"""

from __future__ import annotations

import json
import time
from math import isqrt
from pathlib import Path
from typing import Any, TextIO

import attrs
from eth_abi import encode as abi_encode
from eth_utils import keccak

from .._errors import AetherError, ConfigError, RpcError
from ..chain import RpcClient
from ..config import ChainConfig, DexConfig
from ..dex._v3math import (
    Q96,
    get_amount0_delta,
    get_amount1_delta,
    get_sqrt_ratio_at_tick,
    get_tick_at_sqrt_ratio,
    tick_spacing,
)
from ..dex._v3pool import V3PoolKey, v3_pool_address
from ..prepare import approve_routers
from ._anvil import find_in_node_modules
from ._deploy import (
    ETHER,
    DevnetInfo,
    _call,
    _deployer_account,
    _hex,
    _Plan,
    _searcher_account,
    _send_and_mine,
    _atomic_write,
    _Signer,
    chain_toml,
    mine_until_included,
    selector,
    victim_account,
)

__all__ = [
    "V3_DEX_NAME",
    "V3DevnetInfo",
    "V3PoolSpec",
    "deploy_v3",
    "deploy_v3_into",
    "load_v3_artifact",
    "v3_pool_init_code_hash",
]

V3_DEX_NAME = "uniswap_v3"
_MAX_UINT = 2**256 - 1
_DEADLINE = 2**32
_MINT_SIG = "mint((address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256))"
_MINT_TYPES = "(address,address,uint24,int24,int24,uint256,uint256,uint256,uint256,address,uint256)"

_ARTIFACTS = {
    "UniswapV3Factory": "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
    "UniswapV3Pool": "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
    "SwapRouter": "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json",
    "NonfungiblePositionManager": (
        "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json"
    ),
    "QuoterV2": "@uniswap/v3-periphery/artifacts/contracts/lens/QuoterV2.sol/QuoterV2.json",
}


@attrs.frozen
class V3PoolSpec:
    """One seeded pool: token/WETH at ``fee``, priced ``offset_bps`` off the V2 reference price.

    ``depth_weth`` is the WETH held by the wide range; the other ranges are
    sized from the same liquidity unit (narrower ranges, deeper near the price).
    """

    symbol: str
    fee: int
    offset_bps: int
    depth_weth: int


#: Two fee tiers per token, each off the V2 reference price in its own direction.
DEFAULT_POOLS = (
    V3PoolSpec("USDC", 500, -60, 150 * ETHER),
    V3PoolSpec("USDC", 3000, 90, 80 * ETHER),
    V3PoolSpec("DAI", 100, 40, 100 * ETHER),
    V3PoolSpec("DAI", 3000, -80, 80 * ETHER),
    V3PoolSpec("LINK", 3000, 120, 80 * ETHER),
    V3PoolSpec("LINK", 10000, -100, 60 * ETHER),
    V3PoolSpec("UNI", 500, 70, 80 * ETHER),
    V3PoolSpec("UNI", 10000, -130, 60 * ETHER),
)
# (lower, upper, liquidity multiple) in ticks around the current tick, aligned to the spacing.
_RANGES = ((-4000, 4000, 1), (-1200, 1200, 2), (-240, 240, 3), (400, 2600, 1), (-2600, -400, 1))
#: Thin ranges close to the price (a quarter of the unit each): initialised ticks that
#: everyday victims (a few ETH, moving a pool 10-50 bps) cross, at little extra depth.
_LADDER = ((-30, 30), (-80, 80), (-150, 150))
_PROBE_WETH = 5_000 * ETHER


def load_v3_artifact(name: str) -> tuple[list[Any], bytes]:
    """ABI and creation bytecode of a V3 contract (npm artifacts, or ``V3Probe`` from this package).

    Raises:
        ConfigError: the npm packages are not installed.
    """
    if name == "V3Probe":
        path: Path | None = Path(__file__).with_name("contracts") / "V3Probe.json"
    else:
        path = find_in_node_modules(_ARTIFACTS[name])
    if path is None or not path.is_file():
        raise ConfigError(f"devnet: artifact {name}.json not found; run `npm ci --ignore-scripts` in the aether checkout")
    data = json.loads(path.read_text())
    return data["abi"], bytes.fromhex(data["bytecode"].removeprefix("0x"))


def v3_pool_init_code_hash() -> str:
    """keccak256 of the UniswapV3Pool creation code in the npm artifact."""
    _, code = load_v3_artifact("UniswapV3Pool")
    return _hex(keccak(code))


@attrs.frozen
class V3DevnetInfo:
    """Where the V3 contracts and pools are (lowercase 0x-hex)."""

    factory: str
    router: str  # SwapRouter
    position_manager: str
    quoter: str
    probe: str
    init_code_hash: str
    pools: tuple[V3PoolKey, ...]
    fee_tiers: tuple[int, ...]
    deploy_seconds: float = 0.0

    def pool(self, token_a: str, token_b: str, fee: int) -> V3PoolKey | None:
        a, b = sorted((token_a.lower(), token_b.lower()))
        for p in self.pools:
            if (p.token0, p.token1, p.fee) == (a, b, fee):
                return p
        return None

    def toml(self) -> str:
        """The ``[[dex]]`` block for this V3 DEX (``kind = "v3"``), for an ``AETHER_CONFIG`` file."""
        tiers = ", ".join(str(f) for f in self.fee_tiers)
        return "\n".join(
            [
                "[[dex]]",
                f'name = "{V3_DEX_NAME}"',
                'kind = "v3"',
                f'router = "{self.router}"',
                f'factory = "{self.factory}"',
                f'init_code_hash = "{self.init_code_hash}"',
                f"fee_tiers = [{tiers}]",
                "",
            ]
        )


def price_sqrt_x96(token0_per_unit: int, token1_per_unit: int) -> int:
    """sqrt(token1/token0) as a Q64.96, floor: the price where ``token1_per_unit`` is worth ``token0_per_unit``."""
    return isqrt(token1_per_unit * 2**192 // token0_per_unit)


def position_amounts(sqrt_p: int, lower: int, upper: int, liquidity: int) -> tuple[int, int]:
    """Token amounts (rounded up) a position of ``liquidity`` in ``[lower, upper)`` holds at ``sqrt_p``."""
    pa, pb = get_sqrt_ratio_at_tick(lower), get_sqrt_ratio_at_tick(upper)
    if sqrt_p <= pa:
        return get_amount0_delta(pa, pb, liquidity, True), 0
    if sqrt_p >= pb:
        return 0, get_amount1_delta(pa, pb, liquidity, True)
    return get_amount0_delta(sqrt_p, pb, liquidity, True), get_amount1_delta(pa, sqrt_p, liquidity, True)


def _liquidity_unit(sqrt_p: int, lower: int, upper: int, weth_is_token0: bool, weth: int) -> int:
    pa, pb = get_sqrt_ratio_at_tick(lower), get_sqrt_ratio_at_tick(upper)
    if weth_is_token0:
        return weth * sqrt_p * pb // (Q96 * (pb - sqrt_p))
    return weth * Q96 // (sqrt_p - pa)


async def deploy_v3(
    rpc: RpcClient, info: DevnetInfo, *, pools: tuple[V3PoolSpec, ...] = DEFAULT_POOLS, approve_victims: bool = True
) -> V3DevnetInfo:
    """Deploy Uniswap V3 next to the V2 devnet in ``info`` and seed ``pools``.

    The searcher (and, with ``approve_victims``, every victim) gets a max
    allowance for SwapRouter on WETH and the tokens, the same preparation an
    operator makes.

    Raises:
        ConfigError: the npm artifacts are missing.
        AetherError: a transaction was refused or reverted, or an init-code-hash check failed.
    """
    started = time.perf_counter()
    ich = v3_pool_init_code_hash()
    codes = {name: load_v3_artifact(name)[1] for name in (*_ARTIFACTS, "V3Probe")}
    for name in ("SwapRouter", "NonfungiblePositionManager", "QuoterV2"):
        if bytes.fromhex(ich[2:]) not in codes[name]:
            raise AetherError(
                f"devnet V3 deploy: {name}'s POOL_INIT_CODE_HASH differs from keccak(UniswapV3Pool bytecode) = {ich}; "
                "the npm artifacts do not belong together"
            )
    deployer = _deployer_account(info.seed)
    me = deployer.address.lower()
    nonce_hex, latest = await rpc.batch(
        [("eth_getTransactionCount", [deployer.address, "pending"]), ("eth_getBlockByNumber", ["latest", False])]
    )
    if isinstance(nonce_hex, RpcError) or isinstance(latest, RpcError):
        raise AetherError("devnet V3 deploy: the node refused eth_getTransactionCount/eth_getBlockByNumber")
    block_gas = int(latest["gasLimit"], 16)
    d = _Signer(deployer, info.chain_id, int(nonce_hex, 16))
    weth = info.weth

    factory = d.deploy("deploy UniswapV3Factory", codes["UniswapV3Factory"], gas=6_000_000)
    d.send("enable the 1-bp tier", factory, _call("enableFeeAmount(uint24,int24)", ["uint24", "int24"], [100, 1]), gas=100_000)
    router = d.deploy("deploy SwapRouter", codes["SwapRouter"] + abi_encode(["address", "address"], [factory, weth]), gas=4_000_000)
    npm = d.deploy(
        "deploy NonfungiblePositionManager",
        # The token descriptor only renders tokenURI; minting never calls it.
        codes["NonfungiblePositionManager"] + abi_encode(["address", "address", "address"], [factory, weth, me]),
        gas=6_500_000,
    )
    quoter = d.deploy("deploy QuoterV2", codes["QuoterV2"] + abi_encode(["address", "address"], [factory, weth]), gas=3_000_000)
    probe = d.deploy("deploy V3Probe", codes["V3Probe"], gas=1_500_000)

    weth_total = _PROBE_WETH + sum(8 * s.depth_weth for s in pools)
    d.send("WETH deposit for V3", weth, selector("deposit()"), gas=100_000, value=weth_total)
    approve = _call("approve(address,uint256)", ["address", "uint256"], [npm, _MAX_UINT])
    for tok in (weth, *(t.address for t in info.tokens)):
        d.send("approve NonfungiblePositionManager", tok, approve, gas=80_000)

    keys: list[V3PoolKey] = []
    for spec in pools:
        tok = info.token(spec.symbol).address
        units = info.units_per_eth[[t.symbol for t in info.tokens].index(spec.symbol)]
        units = units * (10_000 + spec.offset_bps) // 10_000
        t0, t1 = sorted((weth, tok))
        weth_is_token0 = t0 == weth
        # price = token1 per token0, in base units
        sqrt_p = price_sqrt_x96(ETHER, units) if weth_is_token0 else price_sqrt_x96(units, ETHER)
        spacing = tick_spacing(spec.fee)
        address = v3_pool_address(factory, t0, t1, spec.fee, ich)
        keys.append(V3PoolKey(address=address, dex=V3_DEX_NAME, token0=t0, token1=t1, fee=spec.fee))
        d.send(
            f"create V3 pool {spec.symbol}/WETH {spec.fee}",
            npm,
            _call(
                "createAndInitializePoolIfNecessary(address,address,uint24,uint160)",
                ["address", "address", "uint24", "uint160"],
                [t0, t1, spec.fee, sqrt_p],
            ),
            gas=6_000_000,
        )
        centre = get_tick_at_sqrt_ratio(sqrt_p)
        wide_lo, wide_hi = _aligned(centre, _RANGES[0][0], _RANGES[0][1], spacing)
        unit = _liquidity_unit(sqrt_p, wide_lo, wide_hi, weth_is_token0, spec.depth_weth)
        for lo_off, hi_off, mult in _RANGES:
            lo, hi = _aligned(centre, lo_off, hi_off, spacing)
            a0, a1 = position_amounts(sqrt_p, lo, hi, unit * mult)
            params = (t0, t1, spec.fee, lo, hi, a0 + 1, a1 + 1, 0, 0, me, _DEADLINE)
            d.send(
                f"mint V3 position {spec.symbol}/WETH {spec.fee} [{lo},{hi})",
                npm,
                selector(_MINT_SIG) + abi_encode([_MINT_TYPES], [params]),
                gas=1_000_000,
            )
        for lo_off, hi_off in _LADDER:
            lo, hi = _aligned(centre, lo_off, hi_off, spacing)
            a0, a1 = position_amounts(sqrt_p, lo, hi, unit // 4)
            params = (t0, t1, spec.fee, lo, hi, a0 + 1, a1 + 1, 0, 0, me, _DEADLINE)
            d.send(
                f"mint V3 ladder position {spec.symbol}/WETH {spec.fee} [{lo},{hi})",
                npm,
                selector(_MINT_SIG) + abi_encode([_MINT_TYPES], [params]),
                gas=1_000_000,
            )
    # The probe mints exact-liquidity positions in tests; it pays from its own balance.
    d.send("WETH to V3Probe", weth, _call("transfer(address,uint256)", ["address", "uint256"], [probe, _PROBE_WETH]), gas=100_000)
    for t in info.tokens:
        amount = 10**12 * 10**t.decimals
        d.send("tokens to V3Probe", t.address, _call("transfer(address,uint256)", ["address", "uint256"], [probe, amount]), gas=100_000)

    plan = _Plan()
    plan.add(d)
    if approve_victims:
        approve_router = _call("approve(address,uint256)", ["address", "uint256"], [router, _MAX_UINT])
        victims = {v.address.lower(): v for v in (victim_account(info.seed, i) for i in range(len(info.victims)))}
        counts = await rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in info.victims])
        for addr, n in zip(info.victims, counts, strict=True):
            if isinstance(n, RpcError) or addr not in victims:
                raise AetherError(f"devnet V3 deploy: cannot read the nonce of victim {addr}")
            s = _Signer(victims[addr], info.chain_id, int(n, 16))
            for t in info.tokens:
                s.send("victim approval (SwapRouter)", t.address, approve_router, gas=80_000)
            plan.add(s)
    await _send_and_mine(rpc, plan, block_gas=block_gas)

    got = await rpc.batch(
        [
            (
                "eth_call",
                [{"to": factory, "data": _hex(_call("getPool(address,address,uint24)", ["address", "address", "uint24"], [k.token0, k.token1, k.fee]))}, "latest"],
            )
            for k in keys
        ]
    )
    for k, r in zip(keys, got, strict=True):
        found = "0x" + r[-40:] if isinstance(r, str) else None
        if found != k.address:
            raise AetherError(f"devnet V3 deploy: factory.getPool for fee {k.fee} is {found}, CREATE2 with {ich} says {k.address}")

    v3_dex = DexConfig(name=V3_DEX_NAME, router=router, factory=factory, init_code_hash=ich, fee_bps=0)
    searcher_chain = ChainConfig(weth=weth, dexes=(v3_dex,), tokens=info.tokens)
    approvals = await approve_routers(rpc, _searcher_account(info.seed), searcher_chain)
    await mine_until_included(rpc, approvals, ["searcher approval (SwapRouter)"] * len(approvals))
    return V3DevnetInfo(
        factory=factory,
        router=router,
        position_manager=npm,
        quoter=quoter,
        probe=probe,
        init_code_hash=ich,
        pools=tuple(keys),
        fee_tiers=tuple(sorted({s.fee for s in pools})),
        deploy_seconds=time.perf_counter() - started,
    )


def _aligned(centre: int, lo_off: int, hi_off: int, spacing: int) -> tuple[int, int]:
    lo = (centre + lo_off) // spacing * spacing
    hi = -(-(centre + hi_off) // spacing) * spacing
    if hi <= lo:
        hi = lo + spacing
    return lo, hi


async def deploy_v3_into(rpc: RpcClient, info: DevnetInfo, workdir: Path, *, out: TextIO | None = None) -> V3DevnetInfo:
    """``aether devnet`` (V3 on unless ``--no-v3``): deploy V3 beside the V2 devnet and add it to the run's config.

    The ``[[dex]] kind = "v3"`` block is appended to the generated ``chain.toml``
    (``info.config_path``, the ``AETHER_CONFIG`` that ``aether run`` and
    ``scripts/mempool_backrun_shadow.sh`` read), so a run on the devnet sees
    the V3 pools that its victims trade; it is also written alone to
    ``workdir/v3.toml`` for tools that want only the V3 block. One line on
    ``out`` says where the V3 contracts are.
    """
    v3 = await deploy_v3(rpc, info)
    _atomic_write(workdir / "v3.toml", v3.toml())
    _atomic_write(info.config_path, chain_toml(info) + v3.toml())
    if out is not None:
        tiers = "/".join(str(f) for f in v3.fee_tiers)
        print(
            f"  {V3_DEX_NAME:<10} router {v3.router} factory {v3.factory} quoter {v3.quoter} "
            f"(deployed in {v3.deploy_seconds:.2f} s) "
            f"({len(v3.pools)} pools, fee tiers {tiers}; [[dex]] block in {info.config_path} and {workdir / 'v3.toml'})",
            file=out,
        )
    return v3
