"""The opportunity engine against the real devnet: real Router02, real pairs, real anvil.

Every candidate found is replayed as [victim, backrun] on the chain (send,
mine, compare the searcher's WETH, revert) and must realise exactly the
predicted gross profit, wei for wei.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from eth_account import Account
from eth_utils import to_checksum_address

from aether.chain import open_rpc
from aether.chain._tx import decode_pending_tx
from aether.devnet._deploy import victim_account
from aether.dex import PoolBook, decode_swap, decode_swap_eth_abi, encode_swap
from aether.messages import Call, Candidate, Head
from aether.strategy import BackrunStrategy, BlockArbStrategy, Rejection, Validator

pytestmark = pytest.mark.devnet

ETHER = 10**18
GWEI = 10**9

if not (Path(__file__).parents[1] / "conftest.py").exists():  # pragma: no cover - until the shared fixture lands
    from collections.abc import Iterator

    from aether.devnet._anvil import AnvilProcess
    from aether.devnet._deploy import deploy

    @pytest.fixture(scope="module")
    def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
        node = AnvilProcess()
        node.start()
        try:

            async def _deploy() -> Any:
                async with open_rpc(node.rpc_url, timeout=30) as rpc:
                    return await deploy(rpc, tmp_path_factory.mktemp("devnet"), n_victims=4)

            yield trio.run(_deploy)
        finally:
            node.stop()

    @pytest.fixture
    async def chain(devnet: Any) -> Any:
        async with open_rpc(devnet.rpc_url) as rpc:
            snap = await rpc.call("evm_snapshot", [])
            try:
                yield None
            finally:
                await rpc.call("evm_revert", [snap])


# --------------------------------------------------------------------------- helpers


def _balance_of(addr: str) -> str:
    return "0x70a08231" + "00" * 12 + addr[2:]


async def _weth(rpc: Any, weth: str, who: str, tag: str = "latest") -> int:
    return int(await rpc.call("eth_call", [{"to": weth, "data": _balance_of(who)}, tag]), 16)


async def _head(rpc: Any) -> Head:
    b = await rpc.call("eth_getBlockByNumber", ["latest", False])
    return Head(
        number=int(b["number"], 16),
        hash=b["hash"],
        parent_hash=b["parentHash"],
        timestamp=int(b["timestamp"], 16),
        base_fee=int(b.get("baseFeePerGas", "0x0"), 16),
        gas_used=int(b["gasUsed"], 16),
        gas_limit=int(b["gasLimit"], 16),
        seen_at=trio.current_time(),
    )


async def _send(rpc: Any, account: Any, chain_id: int, to: str, data: bytes, *, value: int = 0,
                tip: int = 2 * GWEI, gas: int = 600_000) -> str:
    nonce = int(await rpc.call("eth_getTransactionCount", [account.address, "pending"]), 16)
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "to": to_checksum_address(to),
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": 200 * GWEI,
            "maxPriorityFeePerGas": tip,
        }
    )
    return await rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()])


async def _receipt(rpc: Any, h: str) -> dict[str, Any]:
    r = await rpc.call("eth_getTransactionReceipt", [h])
    assert r is not None, f"{h} not mined"
    return r


async def _replay(rpc: Any, devnet: Any, cand: Candidate, *, victim_hash: str | None) -> int:
    """Send our calls after the (pending) victim, mine one block, return the WETH delta."""
    searcher = Account.from_key(devnet.searcher_key_file.read_text().strip())
    before = await _weth(rpc, devnet.weth, devnet.searcher_address)
    ours = [await _send(rpc, searcher, devnet.chain_id, c.to, c.data, value=c.value, tip=GWEI) for c in cand.calls]
    await rpc.call("evm_mine", [])
    hashes = ([victim_hash] if victim_hash else []) + ours
    receipts = [await _receipt(rpc, h) for h in hashes]
    assert [r["status"] for r in receipts] == ["0x1"] * len(receipts)
    assert len({r["blockNumber"] for r in receipts}) == 1  # one block, victim first (fifo)
    assert [int(r["transactionIndex"], 16) for r in receipts] == sorted(int(r["transactionIndex"], 16) for r in receipts)
    after = await _weth(rpc, devnet.weth, devnet.searcher_address)
    return after - before


def _token(devnet: Any, symbol: str) -> str:
    return devnet.token(symbol).address


# The six functions, each as a victim on uniswap that moves WETH/LINK (or WETH/USDC)
# enough to leave a gap to sushiswap. (function, path symbols, amount_in, amount_out)
def _victim_swaps(devnet: Any) -> dict[str, tuple[list[str], int, int]]:
    W = devnet.weth
    link, dai, usdc = _token(devnet, "LINK"), _token(devnet, "DAI"), _token(devnet, "USDC")
    return {
        "swapExactETHForTokens": ([W, link], 12 * ETHER, 1),
        "swapETHForExactTokens": ([W, link], 13 * ETHER, 2000 * ETHER),  # amountInMax = value
        "swapExactTokensForETH": ([link, W], 3000 * ETHER, 1),
        "swapTokensForExactETH": ([link, W], 5000 * ETHER, 10 * ETHER),
        "swapExactTokensForTokens": ([dai, W, usdc], 30_000 * ETHER, 1),  # multi-hop, two WETH pairs moved
        "swapTokensForExactTokens": ([W, link], 20 * ETHER, 1500 * ETHER),
    }


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "function",
    [
        "swapExactETHForTokens",
        "swapETHForExactTokens",
        "swapExactTokensForETH",
        "swapTokensForExactETH",
        "swapExactTokensForTokens",
        "swapTokensForExactTokens",
    ],
)
async def test_every_swap_function_backrun_realises_prediction_to_the_wei(devnet: Any, chain: Any, function: str) -> None:
    cfg = devnet.chain_config
    uni = devnet.dex("uniswap")
    path, a_in, a_out = _victim_swaps(devnet)[function]
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        # A fresh head: the session devnet mines only when a test asks, so after a long
        # suite its latest block can be minutes old, and our calls' deadline (head + 120 s)
        # would expire in the block mined below at wall-clock time, unlike a real head.
        await rpc.call("evm_mine", [])
        head = await _head(rpc)
        victim = victim_account(devnet.seed, 1)
        data, value = encode_swap(function, amount_in=a_in, amount_out=a_out, path=path, to=victim.address.lower(),
                                  deadline=head.timestamp + 600)
        if function == "swapTokensForExactTokens":  # WETH in: the victim wraps some first
            await _send(rpc, victim, devnet.chain_id, devnet.weth, bytes.fromhex("d0e30db0"), value=50 * ETHER)
            await rpc.call("evm_mine", [])
            head = await _head(rpc)
            await _send(rpc, victim, devnet.chain_id, devnet.weth,
                        bytes.fromhex("095ea7b3") + bytes(12) + bytes.fromhex(uni.router[2:]) + (2**256 - 1).to_bytes(32, "big"))
            await rpc.call("evm_mine", [])
            head = await _head(rpc)
        vhash = await _send(rpc, victim, devnet.chain_id, uni.router, data, value=value)

        # (c) the pending transaction, as the node gives it, decodes with both decoders alike
        obj = await rpc.call("eth_getTransactionByHash", [vhash])
        tx = decode_pending_tx(obj, seen_at=trio.current_time(), first_seen_ns=time.time_ns())
        swap = decode_swap(tx.input, tx.value)
        assert swap == decode_swap_eth_abi(tx.input, tx.value)
        assert (swap.function, swap.path) == (function, tuple(path))

        book = PoolBook(rpc, cfg)
        inventory = await _weth(rpc, devnet.weth, devnet.searcher_address)
        strategy = BackrunStrategy(cfg, book, searcher=devnet.searcher_address)
        t0 = time.perf_counter()
        result = await strategy.on_victim(tx, head, inventory_wei=inventory)
        sized_in = time.perf_counter() - t0
        assert isinstance(result, Candidate), result
        print(f"{function}: sized in {sized_in * 1e3:.2f} ms (one batched reserves fetch included), "
              f"gross {result.expected_gross_profit_wei} wei")
        assert result.victim is tx and result.target_block == head.number + 1
        assert result.expected_gross_profit_wei == result.amount_out - result.amount_in > 0
        assert result.amount_in <= inventory
        assert book.statistics().tracked >= 2

        validator = Validator(rpc, searcher=devnet.searcher_address)
        checked = await validator.validate(result)
        assert isinstance(checked, Candidate), checked
        assert checked.validated and len(checked.simulated_gas) == 2

        # (a) replay [victim, backrun]: the chain pays exactly the prediction
        delta = await _replay(rpc, devnet, result, victim_hash=vhash)
        assert delta == result.expected_gross_profit_wei


async def test_block_arb_finds_validates_and_realises_a_gap_left_by_a_landed_victim(devnet: Any, chain: Any) -> None:
    cfg = devnet.chain_config
    uni = devnet.dex("uniswap")
    link = _token(devnet, "LINK")
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        book = PoolBook(rpc, cfg)
        arb = BlockArbStrategy(cfg, book, searcher=devnet.searcher_address)
        head = await _head(rpc)
        inventory = await _weth(rpc, devnet.weth, devnet.searcher_address)
        await arb.on_head(head, inventory_wei=inventory)  # seeds the book with every WETH pair
        victim = victim_account(devnet.seed, 2)
        data, value = encode_swap("swapExactETHForTokens", amount_in=15 * ETHER, amount_out=1,
                                  path=[devnet.weth, link], to=victim.address.lower(), deadline=head.timestamp + 600)
        await _send(rpc, victim, devnet.chain_id, uni.router, data, value=value)
        await rpc.call("evm_mine", [])  # the victim lands; nobody backran it
        head = await _head(rpc)
        extra = await book.refresh(head.number, [("eth_call", [{"to": devnet.weth, "data": _balance_of(devnet.searcher_address)}, hex(head.number)])])
        inventory = int(extra[0], 16)
        found = await arb.on_head(head, inventory_wei=inventory)
        cands = [c for c in found if isinstance(c, Candidate)]
        link_cands = [c for c in cands if link in (c.route[0].token_out,)]
        assert link_cands, found
        cand = link_cands[0]
        assert cand.source == "block_arb" and cand.victim is None and cand.seen_at == head.seen_at
        assert {h.dex for h in cand.route} == {"uniswap", "sushiswap"}
        checked = await Validator(rpc, searcher=devnet.searcher_address).validate(cand)
        assert isinstance(checked, Candidate) and checked.validated, checked
        delta = await _replay(rpc, devnet, cand, victim_hash=None)
        assert delta == cand.expected_gross_profit_wei


async def test_validator_rejects_a_wrong_prediction_and_a_revert_and_measures_latency(devnet: Any, chain: Any) -> None:
    cfg = devnet.chain_config
    link = _token(devnet, "LINK")
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        head = await _head(rpc)
        victim = victim_account(devnet.seed, 3)
        data, value = encode_swap("swapExactETHForTokens", amount_in=10 * ETHER, amount_out=1,
                                  path=[devnet.weth, link], to=victim.address.lower(), deadline=head.timestamp + 600)
        vhash = await _send(rpc, victim, devnet.chain_id, devnet.dex("uniswap").router, data, value=value)
        tx = decode_pending_tx(await rpc.call("eth_getTransactionByHash", [vhash]))
        book = PoolBook(rpc, cfg)
        cand = await BackrunStrategy(cfg, book, searcher=devnet.searcher_address).on_victim(
            tx, head, inventory_wei=await _weth(rpc, devnet.weth, devnet.searcher_address)
        )
        assert isinstance(cand, Candidate), cand
        v = Validator(rpc, searcher=devnet.searcher_address)

        # one wei too optimistic on the output: a mismatch
        hop = cand.route[1]
        wrong = attrs.evolve(cand, route=(cand.route[0], attrs.evolve(hop, amount_out=hop.amount_out - 1)),
                              expected_gross_profit_wei=cand.expected_gross_profit_wei - 1)
        r = await v.validate(wrong)
        assert isinstance(r, Rejection) and r.reason == "validation_mismatch", r
        # calls that demand one wei more than the pool gives revert: validation_failed
        leg2 = cand.calls[1]
        swap = decode_swap(leg2.data)
        greedy, _ = encode_swap("swapExactTokensForTokens", amount_in=swap.amount_in, amount_out=swap.amount_out + 1,
                                path=swap.path, to=swap.to, deadline=swap.deadline)
        r = await v.validate(attrs.evolve(cand, calls=(cand.calls[0], Call(leg2.to, greedy))))
        assert isinstance(r, Rejection) and r.reason == "validation_failed" and "reverted" in r.detail, r
        # without the victim in front the prediction is wrong: the reserves differ
        r = await v.validate(attrs.evolve(cand, victim=None))
        assert isinstance(r, Rejection) and r.reason in ("validation_mismatch", "validation_failed"), r
        # a victim whose sender has an earlier transaction pending: it cannot be next, whatever it simulates to
        assert cand.victim is not None
        r = await v.validate(attrs.evolve(cand, victim=attrs.evolve(cand.victim, nonce=cand.victim.nonce + 1)))
        assert isinstance(r, Rejection) and r.reason == "victim_nonce_ahead", r

        n = 20
        t0 = time.perf_counter()
        for _ in range(n):
            ok = await v.validate(cand)
            assert isinstance(ok, Candidate) and ok.validated
        per = (time.perf_counter() - t0) / n
        stats = v.statistics()
        assert stats.validated == n and stats.mismatches == 1 and stats.failures == 3
        print(f"eth_simulateV1 validation round trip on anvil: mean {per * 1e3:.2f} ms, "
              f"max {stats.max_s * 1e3:.2f} ms; simulated gas {ok.simulated_gas}")
        # a victim already in the head it was sized on (a late mempool feed re-announcing it): nonce used
        await rpc.call("evm_mine", [])
        mined = await _head(rpc)
        r = await v.validate(attrs.evolve(cand, head_number=mined.number, head_timestamp=mined.timestamp,
                                          target_block=mined.number + 1))
        assert isinstance(r, Rejection) and r.reason == "victim_nonce_used", r
        # validation reads the candidate's own head, not whatever is latest by now: still valid there
        again = await v.validate(cand)
        assert isinstance(again, Candidate) and again.validated, again
        off = Validator(rpc, searcher=devnet.searcher_address, enabled=False)
        assert await off.validate(cand) is cand and off.statistics().skipped == 1


async def test_book_batches_remembers_absent_pairs_and_never_changes_under_a_view(devnet: Any, chain: Any) -> None:
    cfg = devnet.chain_config
    async with open_rpc(devnet.rpc_url, timeout=10) as rpc:
        book = PoolBook(rpc, cfg)
        link = _token(devnet, "LINK")
        real = [book.pair_for(d, devnet.weth, link) for d in cfg.dexes]
        assert real[0] == devnet.pair("uniswap", devnet.weth, link).address  # CREATE2 locally = the factory's
        ghost = book.pair_for("uniswap", devnet.weth, "0x" + "ab" * 20)
        n0 = rpc.statistics().requests
        await book.ensure([*real, ghost])
        assert rpc.statistics().requests == n0 + 1
        assert book.is_absent(ghost) and book.reserves(ghost) is None
        await book.ensure([ghost])  # remembered: not asked again
        assert rpc.statistics().requests == n0 + 1
        head = await _head(rpc)
        n1 = rpc.statistics().requests
        extra = await book.refresh(head.number, [("eth_getBalance", [devnet.searcher_address, hex(head.number)])])
        assert rpc.statistics().requests == n1 + 1  # every tracked pair and the extra call: one request
        assert int(extra[0], 16) > 0 and book.block == head.number
        before = book.reserves(real[0])
        view = book.view()
        view.apply(real[0], devnet.weth, 10**18, 10**6)
        assert view.reserves(real[0]) != before and book.reserves(real[0]) == before
