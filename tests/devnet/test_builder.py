"""The local builder on a real anvil with real Uniswap V2 contracts.

Until the shared devnet fixture lands, these tests start their own anvil and
deploy a two-DEX world (WETH9, one ERC-20, two factories and Router02s) from
the npm artifacts. ``World`` is reused by tests/test_inclusion.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from eth_abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak
from eth_utils import to_checksum_address

from aether.bundle import BundleBuilder, NonceTracker
from aether.chain import RpcClient, open_rpc
from aether.config import BuilderEndpoint
from aether.devnet._builder import LocalBuilder
from aether.messages import Bundle, Call, Candidate, Head, Hop, PendingTx
from aether.metrics import Metrics
from aether.submit import Submitter

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
DEV = [  # anvil's well-known dev accounts (public keys, fine for the devnet)
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
]
DEPLOYER, SEARCHER, VICTIM, AUTH = (Account.from_key(k) for k in DEV)
E18 = 10**18
MAX = 2**256 - 1
DEADLINE = 2**40


def sel(sig: str) -> bytes:
    return keccak(sig.encode())[:4]


def call_data(sig: str, types: list[str], args: list[Any]) -> bytes:
    return sel(sig) + encode(types, args)


def artifact(name: str) -> bytes:
    for pkg in ("v2-core", "v2-periphery"):
        p = ROOT / f"node_modules/@uniswap/{pkg}/build/{name}.json"
        if p.exists():
            return bytes.fromhex(json.loads(p.read_text())["bytecode"].removeprefix("0x"))
    raise FileNotFoundError(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def anvil() -> AsyncIterator[RpcClient]:
    port = _free_port()
    proc = await trio.lowlevel.open_process(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--no-mining", "--order", "fifo", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        async with open_rpc(f"http://127.0.0.1:{port}") as rpc:
            with trio.fail_after(15):
                while True:  # readiness poll of a child process we just started
                    try:
                        await rpc.call("eth_chainId")
                        break
                    except Exception:  # noqa: BLE001
                        await trio.sleep(0.05)
            # Every block one second after its parent, as on a real chain (never the same second):
            # left to the wall clock, a block mined within the parent's second skips the pairs'
            # price-accumulator writes and its gas differs from what was simulated at head + 1 s.
            await rpc.call("anvil_setBlockTimestampInterval", [1])
            yield rpc
    finally:
        proc.kill()
        await proc.wait()


async def send(rpc: RpcClient, frm: str, to: str | None, data: bytes, value: int = 0) -> str:
    tx: dict[str, Any] = {"from": frm, "data": "0x" + data.hex(), "value": hex(value), "gas": hex(6_000_000)}
    if to is not None:
        tx["to"] = to
    return await rpc.call("eth_sendTransaction", [tx])


async def mine(rpc: RpcClient, hashes: list[str]) -> list[dict[str, Any]]:
    await rpc.call("evm_mine")
    receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
    assert all(r is not None and r["status"] == "0x1" for r in receipts), receipts
    return receipts


async def head(rpc: RpcClient, tag: str = "latest") -> Head:
    b = await rpc.call("eth_getBlockByNumber", [tag, False])
    return Head(int(b["number"], 16), b["hash"], b["parentHash"], int(b["timestamp"], 16),
                int(b["baseFeePerGas"], 16), int(b["gasUsed"], 16), int(b["gasLimit"], 16))


@attrs.frozen
class World:
    rpc: RpcClient
    chain_id: int
    weth: str
    tkn: str
    router_a: str
    router_b: str
    pair_a: str
    pair_b: str

    async def eth_call(self, to: str, data: bytes, tag: str = "pending") -> bytes:
        return bytes.fromhex((await self.rpc.call("eth_call", [{"to": to, "data": "0x" + data.hex()}, tag]))[2:])

    async def amount_out(self, router: str, amount_in: int, path: list[str]) -> int:
        out = await self.eth_call(router, call_data("getAmountsOut(uint256,address[])", ["uint256", "address[]"],
                                                    [amount_in, path]))
        return decode(["uint256[]"], out)[0][-1]

    def swap(self, router: str, amount_in: int, path: list[str], to: str, min_out: int = 0) -> bytes:
        return call_data("swapExactTokensForTokens(uint256,uint256,address[],address,uint256)",
                         ["uint256", "uint256", "address[]", "address", "uint256"],
                         [amount_in, min_out, path, to, DEADLINE])

    async def victim(self, nonce: int, amount_in: int = 10 * E18) -> PendingTx:
        """The victim buys TKN with WETH on DEX A and the tx goes into the public pool."""
        data = self.swap(self.router_a, amount_in, [self.weth, self.tkn], VICTIM.address)
        h = await head(self.rpc)
        tx = {"type": 2, "chainId": self.chain_id, "nonce": nonce, "to": to_checksum_address(self.router_a), "value": 0, "data": data,
              "gas": 300_000, "maxFeePerGas": 4 * h.base_fee + 10**9, "maxPriorityFeePerGas": 10**9}
        signed = VICTIM.sign_transaction(tx)
        raw = bytes(signed.raw_transaction)
        await self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        return PendingTx(hash=bytes(signed.hash), raw=raw, type=2, chain_id=self.chain_id, nonce=nonce,
                         sender=VICTIM.address.lower(), to=self.router_a, value=0, input=data, gas=300_000,
                         max_fee_per_gas=tx["maxFeePerGas"], max_priority_fee_per_gas=10**9)

    async def backrun(self, victim: PendingTx | None, h: Head, amount_in: int = 3 * E18,
                      min_out_last: int = 0) -> Candidate:
        """Buy TKN on B, sell it on A: sized and gas-measured on the pending state (after the victim)."""
        mid = await self.amount_out(self.router_b, amount_in, [self.weth, self.tkn])
        out = await self.amount_out(self.router_a, mid, [self.tkn, self.weth])
        calls = (Call(self.router_b, self.swap(self.router_b, amount_in, [self.weth, self.tkn], SEARCHER.address)),
                 Call(self.router_a, self.swap(self.router_a, mid, [self.tkn, self.weth], SEARCHER.address,
                                               min_out_last)))
        # Pinned to the head's timestamp + 1 s, as the validator does: anvil's default depends on the
        # wall clock (a second boundary crossed or not changes the pairs' accumulator writes).
        sim = await self.rpc.call("eth_simulateV1", [{"blockStateCalls": [{
            "blockOverrides": {"time": hex(h.timestamp + 1)},
            "calls": [{"from": SEARCHER.address, "to": c.to, "input": "0x" + c.data.hex()} for c in calls]}]},
            "pending"])
        gas = tuple(int(c["gasUsed"], 16) for c in sim[0]["calls"])
        ok = all(c["status"] == "0x1" for c in sim[0]["calls"])
        route = (Hop("b", self.router_b, self.pair_b, self.weth, self.tkn, amount_in, mid),
                 Hop("a", self.router_a, self.pair_a, self.tkn, self.weth, mid, out))
        return Candidate(source="mempool_backrun" if victim else "block_arb", target_block=h.number + 1,
                         head_number=h.number, victim=victim, route=route, amount_in=amount_in, amount_out=out,
                         expected_gross_profit_wei=out - amount_in, gas_estimate=sum(gas), seen_at=0.0,
                         found_at=0.0, calls=calls, validated=ok, simulated_gas=gas)


async def deploy_world(rpc: RpcClient) -> World:
    chain_id = int(await rpc.call("eth_chainId"), 16)
    d = DEPLOYER.address
    hs = [await send(rpc, d, None, artifact("WETH9")),
          await send(rpc, d, None, artifact("ERC20") + encode(["uint256"], [10**30])),
          await send(rpc, d, None, artifact("UniswapV2Factory") + encode(["address"], [d])),
          await send(rpc, d, None, artifact("UniswapV2Factory") + encode(["address"], [d]))]
    weth, tkn, fa, fb = (r["contractAddress"] for r in await mine(rpc, hs))
    hs = [await send(rpc, d, None, artifact("UniswapV2Router02") + encode(["address", "address"], [f, weth]))
          for f in (fa, fb)]
    ra, rb = (r["contractAddress"] for r in await mine(rpc, hs))
    create = call_data("createPair(address,address)", ["address", "address"], [weth, tkn])
    hs = [await send(rpc, d, weth, sel("deposit()"), 1000 * E18),
          await send(rpc, d, fa, create), await send(rpc, d, fb, create)]
    await mine(rpc, hs)
    get_pair = call_data("getPair(address,address)", ["address", "address"], [weth, tkn])
    pa, pb = ["0x" + (await rpc.call("eth_call", [{"to": f, "data": "0x" + get_pair.hex()}, "latest"]))[-40:]
              for f in (fa, fb)]
    transfer = "transfer(address,uint256)"
    approve = "approve(address,uint256)"
    hs = []
    for pair, tkn_amount in ((pa, 100_000 * E18), (pb, 120_000 * E18)):
        hs += [await send(rpc, d, weth, call_data(transfer, ["address", "uint256"], [pair, 100 * E18])),
               await send(rpc, d, tkn, call_data(transfer, ["address", "uint256"], [pair, tkn_amount])),
               await send(rpc, d, pair, call_data("mint(address)", ["address"], [d]))]
    for who, amount in ((SEARCHER.address, 20 * E18), (VICTIM.address, 100 * E18)):
        hs.append(await send(rpc, who, weth, sel("deposit()"), amount))
        for token in (weth, tkn):
            for router in (ra, rb):
                hs.append(await send(rpc, who, token, call_data(approve, ["address", "uint256"], [router, MAX])))
    await mine(rpc, hs)
    return World(rpc, chain_id, weth.lower(), tkn.lower(), ra.lower(), rb.lower(), pa.lower(), pb.lower())


@contextlib.asynccontextmanager
async def live_stack(rpc: RpcClient, record: Path) -> AsyncIterator[tuple[LocalBuilder, Submitter, Metrics]]:
    """The local builder on its own port and a live submitter pointed at it."""
    metrics = Metrics(builders=["local"])
    async with trio.open_nursery() as nursery:
        local = LocalBuilder(rpc, record_path=record)
        url = await nursery.start(local.serve)
        async with Submitter((BuilderEndpoint("local", url),), AUTH, shadow=False, metrics=metrics,
                             timeout_s=2.0) as sub:
            yield local, sub, metrics
        nursery.cancel_scope.cancel()


async def build(world: World, c: Candidate, h: Head, nonces: NonceTracker, *, new_head: bool = True) -> Bundle:
    if new_head:  # the first bundle at this head: take the node's pending nonce, as the builder actor does
        nonces.reset(int(await world.rpc.call("eth_getTransactionCount", [SEARCHER.address, "pending"]), 16))
    return BundleBuilder(SEARCHER, world.chain_id, tip_share_bps=5000, nonces=nonces).build(c, h, now_ns=0)


@pytest.mark.devnet
async def test_includes_victim_then_backrun_in_order_and_drops_reverting_bundle(tmp_path: Path) -> None:
    async with anvil() as rpc:
        world = await deploy_world(rpc)
        async with live_stack(rpc, tmp_path / "builder.jsonl") as (local, sub, metrics):
            nonces = NonceTracker()
            h = await head(rpc)
            victim = await world.victim(nonce=int(await rpc.call("eth_getTransactionCount",
                                                                  [VICTIM.address, "latest"]), 16))
            good = await build(world, await world.backrun(victim, h), h, nonces)
            assert good.candidate.validated and good.expected_gross_profit_wei > 0
            # A second bundle for the same block whose last tx reverts (min out not reachable).
            bad_c = await world.backrun(None, h, amount_in=E18, min_out_last=10**30)
            bad = await build(world, attrs.evolve(bad_c, validated=True), h, nonces, new_head=False)
            assert bad.nonces == good.nonces  # bundles of one block are alternatives
            # The reverting one arrives first: it is dropped whole, and the good one lands in its place.
            assert await sub.submit(bad) == {"local": "ok"}
            assert await sub.submit(good) == {"local": "ok"}
            await local.before_mine(h.number + 1)
            await rpc.call("evm_mine")
            block = await rpc.call("eth_getBlockByNumber", [hex(h.number + 1), False])
            expected = [victim.hash_hex] + ["0x" + x.hex() for x in good.our_tx_hashes]
            assert block["transactions"] == expected
            receipts = await rpc.batch([("eth_getTransactionReceipt", [x]) for x in expected])
            assert [r["status"] for r in receipts] == ["0x1"] * 3
            assert int(block["baseFeePerGas"], 16) == good.base_fee_wei
            # Nothing of the reverting bundle landed, not even its first (valid) tx.
            for x in bad.our_tx_hashes:
                assert await rpc.call("eth_getTransactionByHash", ["0x" + x.hex()]) is None
            s = local.statistics()
            assert (s.bundles_received, s.included, s.dropped, s.held) == (2, 1, 1, 0)
            assert s.bytes_received > 0 and s.bad_signatures == 0
            # A bundle for a block that passed expires.
            late = await build(world, await world.backrun(None, await head(rpc)), await head(rpc), nonces)
            await sub.submit(late)
            await local.before_mine(late.target_block + 1)
            assert local.statistics().expired == 1
    lines = (tmp_path / "builder.jsonl").read_text().splitlines()
    assert len(lines) == 3
    assert all(base64.b64decode(json.loads(x)["raw_b64"]).startswith(b"POST ") for x in lines)


@pytest.mark.devnet
async def test_call_bundle_and_bad_signature(tmp_path: Path) -> None:
    import httpx
    import orjson

    async with anvil() as rpc:
        world = await deploy_world(rpc)
        async with live_stack(rpc, tmp_path / "b.jsonl") as (local, _sub, _m):
            h = await head(rpc)
            b = await build(world, await world.backrun(None, h), h, NonceTracker())
            body = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "eth_callBundle", "params": [
                {"txs": ["0x" + r.hex() for r in b.envelope], "blockNumber": hex(b.target_block),
                 "stateBlockNumber": "latest"}]})
            from aether.submit import flashbots_signature

            async with httpx.AsyncClient() as client:
                ok = (await client.post(local.url, content=body, headers={
                    "X-Flashbots-Signature": flashbots_signature(AUTH, body)})).json()
                unsigned = (await client.post(local.url, content=body)).json()
                forged = (await client.post(local.url, content=body + b" ", headers={
                    "X-Flashbots-Signature": flashbots_signature(AUTH, body)})).json()
            assert [r["gasUsed"] for r in ok["result"]["results"]] == list(b.candidate.simulated_gas)
            assert "error" not in ok["result"]["results"][1]
            assert unsigned["error"]["code"] == -32600 and "missing" in unsigned["error"]["message"]
            assert forged["error"]["message"] == "error in signature check"
            assert local.statistics().bad_signatures == 2 and local.statistics().requests == 3


@pytest.mark.devnet
async def test_of_two_alternatives_the_better_paying_bundle_wins_the_block(tmp_path: Path) -> None:
    async with anvil() as rpc:
        world = await deploy_world(rpc)
        async with live_stack(rpc, tmp_path / "builder.jsonl") as (local, sub, _metrics):
            h = await head(rpc)
            nonces = NonceTracker()
            nonces.reset(int(await rpc.call("eth_getTransactionCount", [SEARCHER.address, "pending"]), 16))
            c = await world.backrun(None, h)
            low = BundleBuilder(SEARCHER, world.chain_id, tip_share_bps=1000, nonces=nonces).build(c, h, now_ns=0)
            high = BundleBuilder(SEARCHER, world.chain_id, tip_share_bps=9000, nonces=nonces).build(c, h, now_ns=1)
            assert low.nonces == high.nonces and high.priority_fee_wei > low.priority_fee_wei
            assert await sub.submit(low) == {"local": "ok"}  # arrives first, pays less
            assert await sub.submit(high) == {"local": "ok"}
            await local.before_mine(h.number + 1)
            await rpc.call("evm_mine")
            block = await rpc.call("eth_getBlockByNumber", [hex(h.number + 1), False])
            assert block["transactions"] == ["0x" + x.hex() for x in high.our_tx_hashes]
            assert (local.statistics().included, local.statistics().dropped) == (1, 1)
