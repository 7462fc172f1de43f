"""Adversarial review of the V3 victim path on anvil: the directions the happy-path tests do not take.

``test_v3_backrun_devnet`` sends only victims that *buy* a token with ETH, so
every backrun there buys the token back where it is cheap in one direction
only. Here the victims *sell* the token into a V3 pool (token -> WETH through
the real SwapRouter), on every seeded token, so the backrun's legs run the
opposite zeroForOne to those tests. Each candidate must pass the Validator and
realise its predicted WETH profit to the wei. (Every devnet pool has WETH as
token1, so the other orientation is not reachable here; the unit tests of
``V3Leg`` and the V3 math property tests hold both.)
"""

from __future__ import annotations

from typing import Any

import pytest

from aether.chain import RpcClient
from aether.dex._v3pool import V3PoolKey
from aether.messages import venue_pair
from aether.strategy._backrun import encode_exact_input_single
from aether.devnet._deploy import victim_account
from test_strategy_devnet import _head, _send
from test_v3_backrun_devnet import Net, _candidates, _pending, _setup, _validated_and_realised, net  # noqa: F401

pytestmark = pytest.mark.devnet


async def _balance(rpc: Any, token: str, who: str) -> int:
    data = "0x70a08231" + "00" * 12 + who[2:]
    return int(await rpc.call("eth_call", [{"to": token, "data": data}, "latest"]), 16)


async def _v3_seller(rpc: Any, net: Net, token: str, fee: int, share: int, index: int) -> Any:
    """A victim selling ``1/share`` of its ``token`` for WETH through the V3 SwapRouter."""
    head = await _head(rpc)
    victim = victim_account(net.info.seed, index)
    amount = await _balance(rpc, token, victim.address.lower()) // share
    data = encode_exact_input_single(token, net.weth, fee, victim.address.lower(), head.timestamp + 600, amount, 0)
    return await _pending(rpc, await _send(rpc, victim, net.chain_id, net.v3.router, data))


def test_victims_selling_into_v3_pools_of_both_orientations_backrun_to_the_wei(net: Net) -> None:
    by_token: dict[str, list[V3PoolKey]] = {}
    for k in net.v3.pools:
        by_token.setdefault(k.token1 if k.token0 == net.weth else k.token0, []).append(k)
    done: list[str] = []
    for token, keys in sorted(by_token.items()):
        moved = min(keys, key=lambda k: k.fee)

        async def body(rpc: RpcClient, token: str = token, moved: V3PoolKey = moved) -> None:
            s = await _setup(rpc, net, net.chain((), tuple(sorted(k.fee for k in by_token[token]))))
            tx = await _v3_seller(rpc, net, token, moved.fee, 1000, index=0)
            post, cands = await _candidates(rpc, s, tx)
            assert list(post.v3()) == [moved.address], post
            assert len(cands) == 1, cands
            c = cands[0]
            assert venue_pair(c.route) == "v3/v3"
            # (the devnet seeds its tiers at offset prices, so which leg is the moved pool varies)
            assert moved.address in {h.pair for h in c.route} and c.route[0].token_in == net.weth
            await _validated_and_realised(rpc, net, c)
            done.append(token)

        net.run(body)
    assert done == sorted(by_token) and len(done) >= 4, done
