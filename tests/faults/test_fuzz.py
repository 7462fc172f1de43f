"""Malformed pending transactions and calldata, fuzzed across the codec, the decoder and the actors.

The guarantee: bad input from outside is a counted rejection with a named reason,
never an exception escaping an actor. Three layers, each driven by hypothesis:

* the intake actor's ``screen`` on arbitrary node frames (valid signed transactions
  with fields deleted, retyped, truncated or extended, plus arbitrary JSON);
* the Router02 slice decoder on arbitrary bytes and on mutated valid calldata of all
  six swap functions (offsets and lengths pointed far out of range included);
* the strategy actor's ``run`` loop fed a head and then fuzzed victims addressed to a
  known router, against a node that answers reserves: it must consume every message,
  and every victim must end as a candidate or a counted rejection.

No devnet, no sleeps: each example runs in its own short ``trio.run``.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether._errors import DecodeError
from aether.actors import IntakeActor, StrategyActor
from aether.chain import Frame, RpcClient
from aether.dex import decode_swap, encode_swap
from aether.messages import PendingTx, Tick
from aether.metrics import CANDIDATE_REJECT_REASONS, INTAKE_REJECT_REASONS, Metrics
from test_codec import _signed_obj
from test_strategy_backrun import CHAIN, ETHER, HEAD, OTHER, SEARCHER, SUSHI, TKN, UNI, WETH, FakeNode

ROUTER = "0x" + "ab" * 20  # the `to` of test_codec's signed objects
SWAPS = ("swapExactTokensForTokens", "swapTokensForExactTokens", "swapExactETHForTokens", "swapTokensForExactETH",
         "swapExactTokensForETH", "swapETHForExactTokens")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {t: _signed_obj(t) for t in (0, 1, 2)}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hexish = st.one_of(
    st.text(alphabet="0123456789abcdefABCDEFxg", max_size=70).map(lambda s: "0x" + s),
    st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
    st.just("0x"), st.just(""), st.just("0x" + "f" * 65), st.just("-0x1"),
)
weird = st.one_of(hexish, json_values, st.integers(min_value=-(2**300), max_value=2**300))


def _mutate_hex(value: Any, op: int, pos: int) -> Any:
    if not isinstance(value, str) or not value.startswith("0x"):
        return value
    body = value[2:]
    pos = pos % (len(body) + 1)
    return "0x" + [body[:pos], body[:pos] + "0" + body[pos:], body[:pos] + "z" + body[pos + 1:], body.upper(),
                   body + body][op % 5]


@st.composite
def frames(draw: st.DrawFn) -> Any:
    """A node frame: a valid signed transaction, damaged, or any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    obj = copy.deepcopy(VALID[draw(st.sampled_from((0, 1, 2)))])
    for key in draw(st.lists(st.sampled_from(sorted(obj)), max_size=4, unique=True)):
        action = draw(st.integers(0, 2))
        if action == 0:
            del obj[key]
        elif action == 1:
            obj[key] = draw(weird)
        else:
            obj[key] = _mutate_hex(obj[key], draw(st.integers(0, 4)), draw(st.integers(0, 200)))
    obj.update(draw(st.dictionaries(st.sampled_from(["type", "chainId", "v", "yParity", "accessList", "input",
                                                     "data", "blobVersionedHashes", "authorizationList"]),
                                    weird, max_size=2)))
    return obj


@given(batch=st.lists(frames(), min_size=1, max_size=8))
@FUZZ
def test_intake_screen_turns_every_malformed_frame_into_a_counted_rejection(batch: list[Any]) -> None:
    m = Metrics()
    send, recv = trio.open_memory_channel[PendingTx](64)
    intake = IntakeActor(ws_url="ws://127.0.0.1:1", rpc=None, chain_id=1, routers={ROUTER}, metrics=m,  # type: ignore[arg-type]
                         out=send)
    forwarded = 0
    for obj in batch:
        out = intake.screen(Frame(obj=obj, seen_at=1.0, first_seen_ns=1))  # must not raise
        forwarded += out is not None
    stats = intake.statistics()
    to_router = sum(1 for o in batch if isinstance(o, dict) and isinstance(o.get("to"), str)
                    and o["to"].lower() == ROUTER)
    assert stats.processed == forwarded
    # Every frame for a router: forwarded, rejected, or skipped as a re-announcement of one forwarded.
    assert stats.processed + stats.rejected + intake.duplicates == to_router
    assert m.value("aether_mempool_screen_skipped_total", reason="duplicate") == intake.duplicates
    assert sum(m.value("aether_mempool_intake_rejected_total", reason=r) for r in INTAKE_REJECT_REASONS) == stats.rejected
    assert m.value("aether_mempool_pending_seen_total") == len(batch)


@st.composite
def calldata(draw: st.DrawFn) -> tuple[bytes, int]:
    """Valid swap calldata of any of the six functions, then damaged; or arbitrary bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=400)), draw(st.integers(0, 2**256 - 1))
    fn = draw(st.sampled_from(SWAPS))
    eth_in, eth_out = "ETHFor" in fn, fn.endswith("ForETH") or fn.endswith("ExactETH")
    mid = draw(st.lists(st.sampled_from([TKN, OTHER, WETH]), max_size=2))
    path = [WETH if eth_in else draw(st.sampled_from([TKN, WETH])), *mid, WETH if eth_out else TKN]
    data, value = encode_swap(fn, amount_in=draw(st.integers(1, 10**24)), amount_out=draw(st.integers(0, 10**24)),
                              path=path, to="0x" + "cc" * 20, deadline=HEAD.timestamp + draw(st.integers(-10, 600)))
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == 0 and buf:
            buf[pos] ^= draw(st.integers(1, 255))
        elif op == 1:
            del buf[pos:]
        elif op == 2:
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        else:  # a word (offset, length, amount, address) pointed far out of range
            word = 4 + 32 * draw(st.integers(0, 8))
            big = draw(st.sampled_from([2**255, 2**64, 2**32 - 1, 10**6, 2**256 - 1]))
            buf[word:word + 32] = big.to_bytes(32, "big")
    return bytes(buf), value


@given(case=calldata())
@FUZZ
def test_the_swap_decoder_raises_only_named_decode_errors(case: tuple[bytes, int]) -> None:
    data, value = case
    try:
        swap = decode_swap(data, value)
    except DecodeError as exc:
        assert exc.reason in CANDIDATE_REJECT_REASONS
        return
    assert len(swap.path) >= 2 and all(isinstance(a, str) and len(a) == 42 for a in swap.path)


@given(cases=st.lists(st.tuples(calldata(), st.sampled_from([UNI.router, SUSHI.router])), min_size=1, max_size=6))
@FUZZ
def test_the_strategy_actor_consumes_every_fuzzed_victim_without_an_escaping_exception(
    cases: list[tuple[tuple[bytes, int], str]],
) -> None:
    node = FakeNode()
    node.set_pool(UNI, WETH, 100 * ETHER, TKN, 200_000 * ETHER)
    node.set_pool(SUSHI, WETH, 90 * ETHER, TKN, 200_000 * ETHER)
    node.set_pool(UNI, WETH, 50 * ETHER, OTHER, 10_000 * ETHER)

    async def main() -> tuple[int, int, int, float]:
        m = Metrics()
        rpc = RpcClient("http://node.test", transport=httpx.MockTransport(node.handler))
        inbox_send, inbox = trio.open_memory_channel[Any](len(cases) + 1)
        out, out_recv = trio.open_memory_channel[Any](len(cases) + 1)
        actor = StrategyActor(rpc=rpc, chain=CHAIN, searcher=SEARCHER, metrics=m, inbox=inbox, out=out,
                              block_arb=False)
        inbox_send.send_nowait(Tick(HEAD, HEAD.base_fee, 10 * ETHER, 50 * ETHER, 0))
        for i, ((data, value), router) in enumerate(cases):
            inbox_send.send_nowait(PendingTx(
                hash=i.to_bytes(32, "big"), raw=b"", type=2, chain_id=1, nonce=i, sender="0x" + "cc" * 20,
                to=router, value=value, input=data, gas=300_000, seen_at=4.5, first_seen_ns=1))
        inbox_send.close()
        try:
            with trio.fail_after(30):
                await actor.run()  # returns when the inbox is drained; an escaping exception fails the test
        finally:
            await rpc.aclose()
        candidates = 0
        while True:  # what the actor emitted (the channel holds it all; no consumer task needed)
            try:
                out_recv.receive_nowait()
            except trio.WouldBlock:
                break
            candidates += 1
        stats = actor.statistics()
        counted = sum(m.value("aether_candidate_rejected_total", source="mempool_backrun", reason=r)
                      for r in CANDIDATE_REJECT_REASONS)
        return stats.processed, stats.rejected, candidates, counted

    processed, rejected, candidates, counted = trio.run(main)
    assert processed + rejected == len(cases)  # every victim: a candidate or a counted rejection
    assert candidates == processed and counted == rejected
