"""A seeded stream of pending-transaction frames shaped like mainnet's public mempool.

About 90 % of the frames are what intake must throw away quickly (plain ETH
transfers, ERC-20 transfers/approvals, calls with calldata of realistic sizes to
contracts we do not track) and about 10 % are Router02 swaps on the two mainnet
routers over a few hundred WETH pairs. Every frame is a complete
``eth_subscription`` notification whose transaction re-encodes to its ``hash``
(random ``r``/``s``: intake checks the hash, never the signature), so each one
passes the same checks a real one would.

The pools are filled with the same figures the swaps were sized against:
:meth:`Market.fill` puts them into a :class:`~aether.dex.PoolBook` through its
normal ``ensure`` path, with an in-memory stand-in for the node's ``eth_call``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import orjson

from aether.chain import encode_signed_tx, keccak256
from aether.config import MAINNET, ChainConfig, TokenConfig
from aether.dex import PoolBook, encode_swap, get_amount_in, get_amount_out, pair_address
from aether.dex._logs import SYNC_TOPIC
from aether.messages import Head, Tick
from aether.strategy import PostState

ETHER = 10**18
GWEI = 10**9
CHAIN_ID = 1
SUB_ID = "0x9cef478923ff08bf67fde6c64013158d"
_TOKEN0 = "0x0dfe1681"  # token0()
_TOKEN1 = "0xd21220a7"  # token1()
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

#: Swap functions with their share of the victim stream (mainnet is dominated by the ETH ones).
_SWAP_MIX = (
    ("swapExactETHForTokens", 30),
    ("swapExactTokensForETH", 25),
    ("swapExactTokensForTokens", 20),
    ("swapETHForExactTokens", 10),
    ("swapTokensForExactETH", 8),
    ("swapTokensForExactTokens", 7),
)


def _addr(rng: random.Random) -> str:
    return "0x" + rng.randbytes(20).hex()


def _hexq(n: int) -> str:
    return hex(n)


@attrs.frozen
class Market:
    """The chain the stream lives on: WETH, the two DEXes, the tokens and every pool's reserves."""

    chain: ChainConfig
    #: pair address -> (reserve0, reserve1) in the pair's sorted token order.
    reserves: dict[str, tuple[int, int]]
    head: Head
    searcher: str

    def tick(self, number: int | None = None, *, seen_at: float = 0.0) -> Tick:
        """The account state the bench pretends to read at a head (plenty of ETH and WETH)."""
        n = self.head.number if number is None else number
        head = attrs.evolve(self.head, number=n, timestamp=self.head.timestamp + 12 * (n - self.head.number),
                            seen_at=seen_at)
        return Tick(head, head.base_fee, 100 * ETHER, 100 * ETHER, 0)

    def rpc(self, sims: SimTable | None = None) -> FakeNode:
        """The market as a node; with ``sims``, it also answers ``eth_simulateV1`` from that table."""
        return FakeNode(self.reserves, weth=self.chain.weth, sims=sims, pairs=self.pair_tokens(),
                        head_number=self.head.number)

    def pair_tokens(self) -> dict[str, tuple[str, str]]:
        """pair address -> (token0, token1), what the pair's ``token0()``/``token1()`` return."""
        out: dict[str, tuple[str, str]] = {}
        for dex in self.chain.dexes:
            for tok in self.chain.tokens:
                a, b = sorted((self.chain.weth.lower(), tok.address.lower()), key=lambda x: int(x, 16))
                out[pair_address(dex.factory, dex.init_code_hash, a, b)] = (a, b)
        return out

    def head_json(self) -> dict[str, Any]:
        """The first head as a node's ``newHeads`` notification carries it (the feeder counts on from it)."""
        h = self.head
        return {"number": hex(h.number), "hash": h.hash, "parentHash": h.parent_hash, "timestamp": hex(h.timestamp),
                "baseFeePerGas": hex(h.base_fee), "gasUsed": hex(h.gas_used), "gasLimit": hex(h.gas_limit)}

    async def fill(self, book: PoolBook) -> int:
        """Load every pool into ``book`` through ``ensure`` (the node is this market); returns the count."""
        pairs = []
        for dex in self.chain.dexes:
            for tok in self.chain.tokens:
                pairs.append(book.pair_for(dex, self.chain.weth, tok.address))
        await book.ensure(pairs)
        return len(pairs)


def sim_answer(post: PostState | None) -> Any:
    """An ``eth_simulateV1`` result for one call: the pools' ``Sync`` logs of ``post``, or a revert (``None``)."""
    logs = [] if post is None else [
        {"address": p.pair, "topics": [SYNC_TOPIC], "data": "0x" + p.reserve0.to_bytes(32, "big").hex()
         + p.reserve1.to_bytes(32, "big").hex()} for p in post.pools]
    return [{"number": "0x1", "calls": [{"status": "0x1" if post is not None else "0x0", "logs": logs,
                                          "gasUsed": "0x1", "returnData": "0x"}]}]


#: What a call that moves no pool simulates to: success, no logs.
_NO_LOGS = [{"number": "0x1", "calls": [{"status": "0x1", "logs": [], "gasUsed": "0x5208", "returnData": "0x"}]}]


class SimTable:
    """The node's side of victim simulation, from a table: ``eth_simulateV1`` answers by (sender, nonce).

    The answers are the generated market's exact post-states (the calldata path on
    the same frames, see ``bench._victimsim.sim_table``). A simulation's batch also
    asks the sender's nonce at the head: the table answers the simulated call's own
    nonce, so the victim is its sender's next transaction. A call not in the table
    (a frame that is not a generated swap but passed the screen) moves no pool.
    """

    def __init__(self) -> None:
        self.answers: dict[tuple[str, str], Any] = {}
        self.simulated = 0

    def answer(self, calls: list[tuple[str, list[Any]]]) -> list[Any] | None:
        """The batch's answers if it is a simulation batch, else ``None`` (the caller answers it)."""
        if not calls or calls[0][0] != "eth_simulateV1":
            return None
        call = calls[0][1][0]["blockStateCalls"][0]["calls"][0]
        nonce = call["nonce"]
        self.simulated += 1
        out: list[Any] = [self.answers.get((call["from"], nonce), _NO_LOGS)]
        out += [nonce] * (len(calls) - 1)  # the sender's nonce, and a block number no later than the head
        return out


class FakeNode:
    """Answers ``getReserves`` batches from a dict, like a node at a fixed block (no I/O).

    The heads actor's per-head account batch gets the state :meth:`Market.tick` pretends:
    100 ETH, 100 WETH (``balanceOf`` on WETH), nonce 0. With ``sims`` it also answers
    victim simulations from that table, and ``token0()``/``token1()`` of the market's
    pairs (the simulator's trust check), so the whole pipeline runs on it.
    """

    def __init__(self, reserves: dict[str, tuple[int, int]], *, weth: str = "", sims: SimTable | None = None,
                 pairs: dict[str, tuple[str, str]] | None = None, head_number: int = 0) -> None:
        self._reserves = reserves
        self._weth = weth.lower()
        self._sims = sims
        self._pairs = pairs or {}
        self._head = hex(head_number)

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        if self._sims is not None and (sim := self._sims.answer(calls)) is not None:
            return sim
        out: list[Any] = []
        for method, params in calls:
            if method == "eth_getBalance":
                out.append(hex(100 * ETHER))
                continue
            if method == "eth_getTransactionCount":
                out.append("0x0")
                continue
            if method == "eth_blockNumber":
                out.append(self._head)
                continue
            if method == "eth_call" and params[0]["to"].lower() == self._weth:
                out.append("0x" + (100 * ETHER).to_bytes(32, "big").hex())
                continue
            if method == "eth_call" and params[0].get("data") in (_TOKEN0, _TOKEN1):
                toks = self._pairs.get(params[0]["to"])
                word = "0x" if toks is None else "0x" + "0" * 24 + toks[params[0]["data"] == _TOKEN1][2:]
                out.append(word)
                continue
            r = self._reserves.get(params[0]["to"]) if method == "eth_call" else None
            out.append("0x" if r is None else "0x" + (r[0].to_bytes(32, "big") + r[1].to_bytes(32, "big")
                                                      + bytes(32)).hex())
        return out

    async def call(self, method: str, params: list[Any]) -> Any:
        return (await self.batch([(method, params)]))[0]


def make_market(seed: int = 1, n_tokens: int = 150) -> Market:
    """Mainnet's WETH and routers, ``n_tokens`` tokens, a WETH pool per token on each DEX (2 x n pools).

    The two DEXes quote each token within 0.2 % of each other, so only swaps
    that move a pool by more than the two fees leave something to backrun.
    """
    rng = random.Random(seed)
    weth = MAINNET.weth
    tokens = tuple(TokenConfig(_addr(rng), f"T{i}", 18) for i in range(n_tokens))
    chain = ChainConfig(weth=weth, dexes=MAINNET.dexes, tokens=tokens)
    reserves: dict[str, tuple[int, int]] = {}
    for tok in tokens:
        depth = int(rng.uniform(50, 3000) * ETHER)  # WETH side
        price = rng.uniform(10, 100_000)  # tokens per WETH
        for dex in chain.dexes:
            w = int(depth * rng.uniform(0.6, 1.4))
            t = int(w * price * rng.uniform(0.998, 1.002))
            pair = pair_address(dex.factory, dex.init_code_hash, weth, tok.address)
            reserves[pair] = (w, t) if int(weth, 16) < int(tok.address, 16) else (t, w)
    head = Head(number=20_000_000, hash="0x" + "ab" * 32, parent_hash="0x" + "aa" * 32, timestamp=1_717_000_000,
                base_fee=12 * GWEI, gas_used=15_000_000, gas_limit=30_000_000)
    return Market(chain=chain, reserves=reserves, head=head, searcher="0x" + "5e" * 20)


@attrs.frozen
class Stream:
    """Pre-generated frames: ``frames[i]`` is the notification's bytes, ``kinds[i]`` what it is."""

    frames: list[bytes]
    kinds: list[str]

    @property
    def swaps(self) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == "swap"]


def _oriented(market: Market, dex: Any, a: str, b: str) -> tuple[int, int]:
    pair = pair_address(dex.factory, dex.init_code_hash, a, b)
    r0, r1 = market.reserves[pair]
    return (r0, r1) if int(a, 16) < int(b, 16) else (r1, r0)


def _swap_call(market: Market, rng: random.Random, deadline: int) -> tuple[str, bytes, int]:
    """(router, calldata, value) of one victim swap that would not revert against the book."""
    chain = market.chain
    weth = chain.weth
    dex = chain.dexes[0] if rng.random() < 0.7 else chain.dexes[1]
    tok = rng.choice(chain.tokens).address
    fn = rng.choices([f for f, _ in _SWAP_MIX], [w for _, w in _SWAP_MIX])[0]
    if fn in ("swapExactTokensForTokens", "swapTokensForExactTokens"):
        other = rng.choice(chain.tokens).address
        path = [tok, weth, other] if other != tok else [tok, weth]
    elif "ETHFor" in fn:
        path = [weth, tok]
    elif "ForETH" in fn:
        path = [tok, weth]
    else:
        path = [weth, tok] if rng.random() < 0.5 else [tok, weth]
    # Size: a log-uniform share of the first pool's input side, 0.01 % .. 4 %.
    r_in, r_out = _oriented(market, dex, path[0], path[1])
    share = 10 ** rng.uniform(-4, -1.4)
    exact_in = fn.startswith("swapExact")
    if exact_in:
        amount_in = max(1, int(r_in * share))
        out = amount_in
        for i in range(len(path) - 1):
            ri, ro = _oriented(market, dex, path[i], path[i + 1])
            out = get_amount_out(out, ri, ro) or 0
        amount_out = out * 995 // 1000  # 0.5 % slippage
    else:
        target = max(1, int(r_out * share))
        amount_out = target
        need = target
        for i in range(len(path) - 1, 0, -1):
            ri, ro = _oriented(market, dex, path[i - 1], path[i])
            need = get_amount_in(need, ri, ro) or 1
        amount_in = need * 1005 // 1000
    data, value = encode_swap(fn, amount_in=amount_in, amount_out=amount_out, path=path, to=_addr(rng),
                              deadline=deadline)
    return dex.router, data, value


def _tx_obj(rng: random.Random, *, to: str | None, data: bytes, value: int) -> dict[str, Any]:
    """A node-shaped transaction object whose fields re-encode to its hash."""
    roll = rng.random()
    tx_type = 2 if roll < 0.72 else (0 if roll < 0.97 else 1)
    nonce = rng.randrange(0, 5000)
    gas = rng.choice((21_000, 60_000, 120_000, 250_000, 400_000)) if data else 21_000
    r, s = rng.randrange(1, _N), rng.randrange(1, _N // 2)
    to_b = b"" if to is None else bytes.fromhex(to[2:])
    base: dict[str, Any] = {
        "blockHash": None,
        "blockNumber": None,
        "from": _addr(rng),
        "gas": _hexq(gas),
        "input": "0x" + data.hex(),
        "nonce": _hexq(nonce),
        "to": to,
        "transactionIndex": None,
        "value": _hexq(value),
        "type": _hexq(tx_type),
        "r": _hexq(r),
        "s": _hexq(s),
    }
    access: list[list[Any]] = []
    if tx_type == 1 and rng.random() < 0.7:
        addr = _addr(rng)
        keys = [rng.randbytes(32) for _ in range(rng.randrange(1, 4))]
        access = [[bytes.fromhex(addr[2:]), keys]]
        base["accessList"] = [{"address": addr, "storageKeys": ["0x" + k.hex() for k in keys]}]
    if tx_type == 0:
        gas_price = rng.randrange(10 * GWEI, 60 * GWEI)
        v = CHAIN_ID * 2 + 35 + rng.randrange(2)
        base.update(gasPrice=_hexq(gas_price), v=_hexq(v), chainId=_hexq(CHAIN_ID))
        raw = encode_signed_tx(0, chain_id=CHAIN_ID, nonce=nonce, gas=gas, to=to_b, value=value, data=data,
                               v=v, r=r, s=s, gas_price=gas_price)
    elif tx_type == 1:
        gas_price = rng.randrange(10 * GWEI, 60 * GWEI)
        y = rng.randrange(2)
        base.setdefault("accessList", [])
        base.update(gasPrice=_hexq(gas_price), v=_hexq(y), yParity=_hexq(y), chainId=_hexq(CHAIN_ID))
        raw = encode_signed_tx(1, chain_id=CHAIN_ID, nonce=nonce, gas=gas, to=to_b, value=value, data=data,
                               v=y, r=r, s=s, gas_price=gas_price, access_list=access)
    else:
        prio = rng.randrange(GWEI // 100, 3 * GWEI)
        max_fee = 12 * GWEI * 2 + prio
        y = rng.randrange(2)
        base.update(accessList=[], chainId=_hexq(CHAIN_ID), gasPrice=_hexq(max_fee), maxFeePerGas=_hexq(max_fee),
                    maxPriorityFeePerGas=_hexq(prio), v=_hexq(y), yParity=_hexq(y))
        raw = encode_signed_tx(2, chain_id=CHAIN_ID, nonce=nonce, gas=gas, to=to_b, value=value, data=data,
                               v=y, r=r, s=s, max_fee_per_gas=max_fee, max_priority_fee_per_gas=prio)
    base["hash"] = "0x" + keccak256(raw).hex()
    return base


def _other_call(rng: random.Random, contracts: list[str], tokens: list[str]) -> tuple[str, str | None, bytes, int]:
    roll = rng.random()
    if roll < 0.40:  # plain ETH transfer
        return "transfer", _addr(rng), b"", rng.randrange(10**15, 5 * ETHER)
    if roll < 0.65:  # ERC-20 transfer / approve: 68 bytes
        sel = bytes.fromhex("a9059cbb" if rng.random() < 0.8 else "095ea7b3")
        data = sel + bytes(12) + rng.randbytes(20) + rng.randbytes(32)
        return "erc20", rng.choice(tokens), data, 0
    # Any other contract call: log-normal calldata, median ~ 330 bytes, long tail to ~12 KB.
    size = min(12_000, int(rng.lognormvariate(5.8, 1.0)))
    words = max(0, (size - 4) // 32)
    # Real ABI words are mostly zero padding around a few significant bytes.
    buf = bytearray(rng.randbytes(4) + bytes(32 * words))
    for w in range(words):
        k = rng.randrange(1, 33)
        start = 4 + 32 * w + 32 - k
        buf[start : 4 + 32 * (w + 1)] = rng.randbytes(k)
    value = rng.randrange(10**15, ETHER) if rng.random() < 0.2 else 0
    return "call", rng.choice(contracts), bytes(buf), value


def make_stream(market: Market, n: int, *, seed: int = 2, swap_share: float = 0.10) -> Stream:
    """``n`` frames: ``swap_share`` Router02 swaps, the rest transfers and untracked calls."""
    rng = random.Random(seed)
    contracts = [_addr(rng) for _ in range(2000)]
    tokens = [t.address for t in market.chain.tokens]
    deadline = market.head.timestamp + 86_400
    frames: list[bytes] = []
    kinds: list[str] = []
    for _ in range(n):
        if rng.random() < swap_share:
            to, data, value = _swap_call(market, rng, deadline)
            kind: str = "swap"
        else:
            kind, to_o, data, value = _other_call(rng, contracts, tokens)
            to = to_o  # type: ignore[assignment]
        obj = _tx_obj(rng, to=to, data=data, value=value)
        note = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": SUB_ID, "result": obj}}
        frames.append(orjson.dumps(note))
        kinds.append(kind)
    return Stream(frames, kinds)
