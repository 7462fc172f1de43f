"""Deploying the devnet: WETH9, tokens, two Uniswap V2 DEXes, pools, funded accounts.

The bytecode is the real thing from the npm packages (``@uniswap/v2-core``,
``@uniswap/v2-periphery``); only the 6-decimals token is ours
(``contracts/DevToken6.sol``, compiled once, artifact committed).

Speed matters (the whole devnet must be ready in a few seconds), so nothing
waits on a receipt between steps: every transaction is signed locally with a
locally tracked nonce, every address is computed in advance (CREATE from the
deployer's nonce, CREATE2 for pairs), and the whole plan is sent in two
batches, each mined with a few ``evm_mine`` calls. Nonce order makes the
deployer's transactions execute in plan order; the second batch (approvals
from other accounts) only goes out once the first is mined.

Both factories deploy the same ``UniswapV2Pair`` creation code, so both DEXes
share one init-code hash (on mainnet SushiSwap's differs); it is computed from
the npm artifact, checked against the hash hard-coded in Router02's
``pairFor``, and checked against ``factory.getPair`` for every pair created.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import rlp
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

from .._errors import AetherError, BadNodeData, ConfigError, RpcError
from ..chain import RpcClient
from ..config import ChainConfig, DexConfig, TokenConfig
from ..prepare import approve_routers
from ._anvil import find_in_node_modules

__all__ = [
    "DevnetInfo",
    "PairInfo",
    "contract_address",
    "create2_pair_address",
    "deploy",
    "load_artifact",
    "mine_until_included",
    "pair_init_code_hash",
    "selector",
    "victim_account",
]

ETHER = 10**18
N_VICTIMS = 40
# What each victim holds: plenty, so that hours of traffic never run dry.
VICTIM_ETH = 1_000_000 * ETHER
VICTIM_TOKEN_ETH_WORTH = 20_000 * ETHER
SEARCHER_ETH = 100 * ETHER
SEARCHER_WETH = 50 * ETHER
_DEPLOYER_ETH = 10**9 * ETHER
_MAX_FEE = 200 * 10**9
_TIP = 10**9
_MAX_MINE_ROUNDS = 40


@attrs.frozen
class _TokenSpec:
    symbol: str
    decimals: int
    units_per_eth: int  # reference price: base units of the token worth 1 ETH
    weth_depth: tuple[int, int]  # WETH reserve of the token/WETH pool on (uniswap, sushiswap)


# Reference prices and depths. Pools are a few hundred ETH deep so that an
# everyday victim swap of ~0.5-5 ETH moves the price by ~0.3-3%.
_TOKENS = (
    _TokenSpec("USDC", 6, 3_000 * 10**6, (400 * ETHER, 250 * ETHER)),
    _TokenSpec("DAI", 18, 3_000 * ETHER, (300 * ETHER, 200 * ETHER)),
    _TokenSpec("LINK", 18, 200 * ETHER, (250 * ETHER, 150 * ETHER)),
    _TokenSpec("UNI", 18, 400 * ETHER, (200 * ETHER, 300 * ETHER)),
)
# token/token pools: (symbol a, symbol b, ETH-worth of each side on (uniswap, sushiswap))
_CROSS = (("DAI", "USDC", (300 * ETHER, 200 * ETHER)), ("LINK", "UNI", (150 * ETHER, 100 * ETHER)))
_DEX_NAMES = ("uniswap", "sushiswap")
#: Contracts compiled from ``contracts/*.sol`` (artifacts committed).
_OWN_CONTRACTS = frozenset({"DevToken6", "MultiSwap", "SyncMimic", "DevPermit2"})


# --------------------------------------------------------------------------- helpers


def selector(signature: str) -> bytes:
    """The 4-byte function selector of ``signature``."""
    return keccak(text=signature)[:4]


def _call(signature: str, types: Sequence[str] = (), args: Sequence[Any] = ()) -> bytes:
    return selector(signature) + abi_encode(list(types), list(args))


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def contract_address(sender: str, nonce: int) -> str:
    """The address a CREATE from ``sender`` at ``nonce`` gets (lowercase hex)."""
    return _hex(keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:])


def create2_pair_address(factory: str, token_a: str, token_b: str, init_code_hash: str) -> str:
    """The UniswapV2 pair address for two tokens (order-independent), as ``pairFor`` computes it."""
    t0, t1 = sorted((token_a.lower(), token_b.lower()))
    salt = keccak(bytes.fromhex(t0[2:]) + bytes.fromhex(t1[2:]))
    digest = keccak(b"\xff" + bytes.fromhex(factory[2:]) + salt + bytes.fromhex(init_code_hash[2:]))
    return _hex(digest[12:])


def load_artifact(name: str) -> tuple[list[Any], bytes]:
    """ABI and creation bytecode of a contract.

    ``DevToken6``, ``MultiSwap`` and ``SyncMimic`` come from this package; everything else from the npm build
    directories (v2-core first, then v2-periphery).

    Raises:
        ConfigError: the npm packages are not installed.
    """
    if name in _OWN_CONTRACTS:
        path: Path | None = Path(__file__).with_name("contracts") / f"{name}.json"
    else:
        path = find_in_node_modules(f"@uniswap/v2-core/build/{name}.json") or find_in_node_modules(
            f"@uniswap/v2-periphery/build/{name}.json"
        )
    if path is None or not path.is_file():
        raise ConfigError(f"devnet: artifact {name}.json not found; run `npm ci --ignore-scripts` in the aether checkout")
    data = json.loads(path.read_text())
    code = data.get("bytecode") or data["evm"]["bytecode"]["object"]
    return data["abi"], bytes.fromhex(code.removeprefix("0x"))


def pair_init_code_hash() -> str:
    """keccak256 of the UniswapV2Pair creation code in the npm artifact."""
    _, code = load_artifact("UniswapV2Pair")
    return _hex(keccak(code))


def _derive_key(seed: int, role: str, index: int = 0) -> bytes:
    return keccak(f"aether-devnet:{seed}:{role}:{index}".encode())


def victim_account(seed: int, index: int) -> LocalAccount:
    """The deterministic devnet-only victim account ``index`` for ``seed``."""
    return Account.from_key(_derive_key(seed, "victim", index))


def _searcher_account(seed: int) -> LocalAccount:
    return Account.from_key(_derive_key(seed, "searcher"))


def _deployer_account(seed: int) -> LocalAccount:
    return Account.from_key(_derive_key(seed, "deployer"))


def _atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class _Signer:
    """Signs a run of transactions from one account with a locally tracked nonce."""

    def __init__(self, account: LocalAccount, chain_id: int, nonce: int) -> None:
        self.account = account
        self.chain_id = chain_id
        self.nonce = nonce
        self.raws: list[str] = []
        self.hashes: list[str] = []
        self.labels: list[str] = []
        self.gases: list[int] = []

    def send(self, label: str, to: str | None, data: bytes, *, gas: int, value: int = 0) -> int:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": self.nonce,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": _MAX_FEE,
            "maxPriorityFeePerGas": _TIP,
        }
        if to is not None:
            tx["to"] = to_checksum_address(to)
        signed = self.account.sign_transaction(tx)
        self.raws.append(_hex(signed.raw_transaction))
        self.hashes.append(_hex(signed.hash))
        self.labels.append(label)
        self.gases.append(gas)
        self.nonce += 1
        return self.nonce - 1

    def deploy(self, label: str, code: bytes, *, gas: int) -> str:
        nonce = self.send(label, None, code, gas=gas)
        return contract_address(self.account.address.lower(), nonce)


@attrs.define
class _Plan:
    """Signed transactions in the order they must execute."""

    raws: list[str] = attrs.field(factory=list)
    hashes: list[str] = attrs.field(factory=list)
    labels: list[str] = attrs.field(factory=list)
    gases: list[int] = attrs.field(factory=list)

    def add(self, signer: _Signer) -> None:
        self.raws += signer.raws
        self.hashes += signer.hashes
        self.labels += signer.labels
        self.gases += signer.gases


async def _send_and_mine(rpc: RpcClient, plan: _Plan, *, block_gas: int) -> None:
    """Send ``plan`` in chunks that fit one block each, mining each chunk.

    Chunks matter (observed with anvil 1.7.1): after a block that could not fit
    one of the deployer's transactions, that transaction went into the next
    block but the deployer's later ones vanished from the pool for good.
    """
    budget = block_gas * 9 // 10
    start = 0
    while start < len(plan.raws):
        end, used = start, 0
        while end < len(plan.raws) and (end == start or used + plan.gases[end] <= budget):
            used += plan.gases[end]
            end += 1
        results = await rpc.batch([("eth_sendRawTransaction", [raw]) for raw in plan.raws[start:end]])
        for i, r in enumerate(results):
            if isinstance(r, RpcError):
                raise AetherError(f"devnet deploy: {plan.labels[start + i]} was refused: {r.message}") from r
        await mine_until_included(rpc, plan.hashes[start:end], plan.labels[start:end])
        start = end


async def mine_until_included(
    rpc: RpcClient, hashes: Sequence[str], labels: Sequence[str] | None = None, *, max_rounds: int = _MAX_MINE_ROUNDS
) -> list[dict[str, Any]]:
    """Mine blocks until every transaction in ``hashes`` has a successful receipt.

    Returns:
        The receipts, in the order of ``hashes``.

    Raises:
        AetherError: a transaction reverted (named by its label), or some were
            still not mined after ``max_rounds`` blocks.
    """
    labels = list(labels) if labels is not None else list(hashes)
    receipts: dict[str, dict[str, Any]] = {}
    for _ in range(max_rounds):
        await rpc.call("evm_mine", [])
        missing = [h for h in hashes if h not in receipts]
        for start in range(0, len(missing), 500):
            part = missing[start : start + 500]
            got = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in part])
            for h, r in zip(part, got, strict=True):
                if isinstance(r, dict):
                    receipts[h] = r
        if len(receipts) == len(set(hashes)):
            break
    else:
        raise AetherError(f"devnet deploy: {len(set(hashes)) - len(receipts)} transactions not mined after {max_rounds} blocks")
    out = [receipts[h] for h in hashes]
    for label, r in zip(labels, out, strict=True):
        if r.get("status") != "0x1":
            raise AetherError(f"devnet deploy: {label} reverted (tx {r.get('transactionHash')})")
    return out


# --------------------------------------------------------------------------- result


@attrs.frozen
class PairInfo:
    """One deployed Uniswap V2 pair."""

    dex: str
    address: str
    token0: str
    token1: str


@attrs.frozen
class DevnetInfo:
    """Where everything on the devnet is. Addresses are lowercase 0x-hex.

    ``units_per_eth[i]`` is the reference price of ``tokens[i]`` (base units
    worth 1 ETH) that the pools were seeded around; victim traffic sizes its
    token amounts with it.
    """

    rpc_url: str
    ws_url: str
    chain_id: int
    seed: int
    weth: str
    tokens: tuple[TokenConfig, ...]
    units_per_eth: tuple[int, ...]
    dexes: tuple[DexConfig, ...]
    pairs: tuple[PairInfo, ...]
    deployer: str
    searcher_address: str
    searcher_key_file: Path
    config_path: Path
    victims: tuple[str, ...]
    deploy_seconds: float = 0.0

    @property
    def chain_config(self) -> ChainConfig:
        return ChainConfig(weth=self.weth, dexes=self.dexes, tokens=self.tokens)

    def token(self, symbol: str) -> TokenConfig:
        for t in self.tokens:
            if t.symbol == symbol:
                return t
        raise KeyError(symbol)

    def dex(self, name: str) -> DexConfig:
        for d in self.dexes:
            if d.name == name:
                return d
        raise KeyError(name)

    def pair(self, dex: str, token_a: str, token_b: str) -> PairInfo | None:
        a, b = sorted((token_a.lower(), token_b.lower()))
        for p in self.pairs:
            if p.dex == dex and p.token0 == a and p.token1 == b:
                return p
        return None


def chain_toml(info: DevnetInfo) -> str:
    """The ``AETHER_CONFIG`` TOML text for ``info``."""
    lines = [
        "# aether devnet chain config, written by `aether devnet`",
        f"# chain_id = {info.chain_id}",
        f'weth = "{info.weth}"',
        "",
    ]
    for d in info.dexes:
        lines += [
            "[[dex]]",
            f'name = "{d.name}"',
            f'router = "{d.router}"',
            f'factory = "{d.factory}"',
            f'init_code_hash = "{d.init_code_hash}"',
            f"fee_bps = {d.fee_bps}",
            "",
        ]
    for t in info.tokens:
        lines += ["[[token]]", f'address = "{t.address}"', f'symbol = "{t.symbol}"', f"decimals = {t.decimals}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- deploy


async def deploy(
    rpc: RpcClient,
    workdir: Path,
    *,
    seed: int = 1,
    ws_url: str | None = None,
    n_victims: int = N_VICTIMS,
    liquidity_scale: int = 1,
) -> DevnetInfo:
    """Deploy everything on a fresh anvil (``--no-mining``) and fund the accounts.

    Writes ``workdir/chain.toml`` (the ``AETHER_CONFIG`` file) and
    ``workdir/searcher.key`` (mode 0600).

    Args:
        rpc: the anvil node.
        workdir: where the config and the key file go (created if missing).
        seed: makes keys, addresses and pool prices reproducible.
        ws_url: the node's WebSocket URL (default: derived from ``rpc.url``).
        n_victims: how many victim accounts to fund and approve.
        liquidity_scale: multiplies every pool's depth and the searcher's WETH
            inventory (``aether devnet --liquidity-scale``: deep pools, big backruns).

    Raises:
        ConfigError: the npm artifacts are missing.
        AetherError: a deployment transaction was refused or reverted, or an
            init-code-hash check failed.
    """
    if type(liquidity_scale) is not int or liquidity_scale < 1:
        raise ConfigError(f"--liquidity-scale={liquidity_scale!r}: expected a whole number >= 1")
    searcher_weth = SEARCHER_WETH * liquidity_scale
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ich = pair_init_code_hash()
    _, router_code = load_artifact("UniswapV2Router02")
    if bytes.fromhex(ich[2:]) not in router_code:
        raise AetherError(
            f"devnet deploy: Router02's pairFor hash differs from keccak(UniswapV2Pair bytecode) = {ich}; "
            "the npm artifacts do not belong together"
        )

    deployer = _deployer_account(seed)
    searcher = _searcher_account(seed)
    victims = [victim_account(seed, i) for i in range(n_victims)]
    chain_id_hex, nonce_hex = await rpc.batch(
        [("eth_chainId", []), ("eth_getTransactionCount", [deployer.address, "pending"])]
    )
    if isinstance(chain_id_hex, RpcError) or isinstance(nonce_hex, RpcError):
        raise BadNodeData("devnet deploy: the node refused eth_chainId/eth_getTransactionCount")
    chain_id = int(chain_id_hex, 16)
    funding = [("anvil_setBalance", [deployer.address, hex(_DEPLOYER_ETH)])]
    funding += [("anvil_setBalance", [searcher.address, hex(SEARCHER_ETH + searcher_weth)])]
    funding += [("anvil_setBalance", [v.address, hex(VICTIM_ETH)]) for v in victims]
    for r in await rpc.batch(funding):
        if isinstance(r, RpcError):
            raise AetherError(f"devnet deploy: anvil_setBalance refused: {r.message}") from r

    d = _Signer(deployer, chain_id, int(nonce_hex, 16))
    me = deployer.address.lower()

    # --- contracts
    _, weth_code = load_artifact("WETH9")
    weth = d.deploy("deploy WETH9", weth_code, gas=1_500_000)
    _, erc20_code = load_artifact("ERC20")
    _, tok6_code = load_artifact("DevToken6")
    token_addrs: dict[str, str] = {}
    for spec in _TOKENS:
        supply = 10**15 * 10**spec.decimals
        if spec.decimals == 6:
            code = tok6_code + abi_encode(["uint256"], [supply])
        else:
            code = erc20_code + abi_encode(["uint256"], [supply])
        token_addrs[spec.symbol] = d.deploy(f"deploy {spec.symbol}", code, gas=2_000_000)
    _, factory_code = load_artifact("UniswapV2Factory")
    dexes: list[DexConfig] = []
    for name in _DEX_NAMES:
        factory = d.deploy(f"deploy {name} factory", factory_code + abi_encode(["address"], [me]), gas=4_500_000)
        router = d.deploy(
            f"deploy {name} router", router_code + abi_encode(["address", "address"], [factory, weth]), gas=5_500_000
        )
        dexes.append(DexConfig(name=name, router=router, factory=factory, init_code_hash=ich, fee_bps=30))

    # --- pools: (dex, token a, amount a, token b, amount b)
    pools: list[tuple[DexConfig, str, int, str, int]] = []
    spec_by_symbol = {s.symbol: s for s in _TOKENS}
    for spec in _TOKENS:
        base_weth, alt_weth = (w * liquidity_scale for w in spec.weth_depth)
        offset_bps = rng.randint(30, 150) * rng.choice((-1, 1))
        pools.append((dexes[0], weth, base_weth, token_addrs[spec.symbol], base_weth * spec.units_per_eth // ETHER))
        alt_tokens = alt_weth * spec.units_per_eth // ETHER * (10_000 + offset_bps) // 10_000
        pools.append((dexes[1], weth, alt_weth, token_addrs[spec.symbol], alt_tokens))
    for sym_a, sym_b, worths in _CROSS:
        base_worth, alt_worth = (w * liquidity_scale for w in worths)
        a, b = spec_by_symbol[sym_a], spec_by_symbol[sym_b]
        offset_bps = rng.randint(30, 150) * rng.choice((-1, 1))
        for dex, worth, off in ((dexes[0], base_worth, 0), (dexes[1], alt_worth, offset_bps)):
            amount_a = worth * a.units_per_eth // ETHER
            amount_b = worth * b.units_per_eth // ETHER * (10_000 + off) // 10_000
            pools.append((dex, token_addrs[sym_a], amount_a, token_addrs[sym_b], amount_b))

    weth_needed = sum(amt for _, ta, amt_a, tb, amt_b in pools for tok, amt in ((ta, amt_a), (tb, amt_b)) if tok == weth)
    d.send("WETH deposit", weth, selector("deposit()"), gas=100_000, value=weth_needed)
    pairs: list[PairInfo] = []
    for dex, ta, amount_a, tb, amount_b in pools:
        t0, t1 = sorted((ta, tb))
        pair = create2_pair_address(dex.factory, ta, tb, ich)
        pairs.append(PairInfo(dex=dex.name, address=pair, token0=t0, token1=t1))
        d.send(f"{dex.name} createPair", dex.factory, _call("createPair(address,address)", ["address", "address"], [ta, tb]), gas=3_500_000)
        for tok, amt in ((ta, amount_a), (tb, amount_b)):
            d.send("seed transfer", tok, _call("transfer(address,uint256)", ["address", "uint256"], [pair, amt]), gas=100_000)
        d.send(f"{dex.name} mint", pair, _call("mint(address)", ["address"], [me]), gas=400_000)

    # --- victims' tokens
    for spec in _TOKENS:
        amount = VICTIM_TOKEN_ETH_WORTH * spec.units_per_eth // ETHER
        for v in victims:
            d.send(
                "victim funding",
                token_addrs[spec.symbol],
                _call("transfer(address,uint256)", ["address", "uint256"], [v.address, amount]),
                gas=100_000,
            )
    latest = await rpc.call("eth_getBlockByNumber", ["latest", False])
    block_gas = int(latest["gasLimit"], 16)
    first = _Plan()
    first.add(d)
    await _send_and_mine(rpc, first, block_gas=block_gas)

    # --- the init code hash, checked against the factories
    checks = await rpc.batch(
        [
            ("eth_call", [{"to": next(x.factory for x in dexes if x.name == p.dex), "data": _hex(_call("getPair(address,address)", ["address", "address"], [p.token0, p.token1]))}, "latest"])
            for p in pairs
        ]
    )
    for p, r in zip(pairs, checks, strict=True):
        got = "0x" + r[-40:] if isinstance(r, str) else None
        if got != p.address:
            raise AetherError(f"devnet deploy: factory.getPair for {p.dex} pair is {got}, CREATE2 with {ich} says {p.address}")

    tokens = tuple(TokenConfig(token_addrs[s.symbol], s.symbol, s.decimals) for s in _TOKENS)
    info = DevnetInfo(
        rpc_url=rpc.url,
        ws_url=ws_url or rpc.url.replace("http://", "ws://").replace("https://", "wss://"),
        chain_id=chain_id,
        seed=seed,
        weth=weth,
        tokens=tokens,
        units_per_eth=tuple(s.units_per_eth for s in _TOKENS),
        dexes=tuple(dexes),
        pairs=tuple(pairs),
        deployer=me,
        searcher_address=searcher.address.lower(),
        searcher_key_file=(workdir / "searcher.key").resolve(),
        config_path=(workdir / "chain.toml").resolve(),
        victims=tuple(v.address.lower() for v in victims),
    )

    # --- second batch: victims' approvals, the searcher's WETH and approvals
    second = _Plan()
    approve_args = [
        _call("approve(address,uint256)", ["address", "uint256"], [dex.router, 2**256 - 1]) for dex in dexes
    ]
    for v in victims:
        s = _Signer(v, chain_id, 0)
        for token in tokens:
            for data in approve_args:
                s.send("victim approval", token.address, data, gas=80_000)
        second.add(s)
    s = _Signer(searcher, chain_id, 0)
    s.send("searcher WETH deposit", weth, selector("deposit()"), gas=100_000, value=searcher_weth)
    second.add(s)
    await _send_and_mine(rpc, second, block_gas=block_gas)
    # The searcher's one-time preparation, done the way an operator would do it.
    approvals = await approve_routers(rpc, searcher, info.chain_config)
    await mine_until_included(rpc, approvals, ["searcher approval"] * len(approvals))

    _atomic_write(info.searcher_key_file, "0x" + bytes(searcher.key).hex() + "\n", mode=0o600)
    _atomic_write(info.config_path, chain_toml(info))
    return attrs.evolve(info, deploy_seconds=time.perf_counter() - started)

