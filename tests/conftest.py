"""Shared fixtures: the real devnet (anvil + Uniswap V2) for ``@pytest.mark.devnet`` tests.

``devnet`` (session, sync) starts one anvil and deploys everything into it
once; it is only set up when a selected test asks for it, so a run without
devnet tests never starts anvil. ``chain`` (function, async) snapshots the
chain before the test and reverts after it (dropping whatever the test left in
the pool), so tests never see each other's state; it yields the same
:class:`~aether.devnet.DevnetInfo`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from aether.chain import open_rpc
from aether.devnet import AnvilProcess, DevnetInfo, deploy


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevnetInfo]:
    """The deployed devnet: anvil URLs, WETH, tokens, both DEXes, searcher and victims."""
    node = AnvilProcess()
    started = time.perf_counter()
    node.start()
    try:

        async def _deploy() -> DevnetInfo:
            async with open_rpc(node.rpc_url, timeout=30.0) as rpc:
                return await deploy(rpc, tmp_path_factory.mktemp("devnet"), ws_url=node.ws_url)

        info = trio.run(_deploy)
        info_setup = time.perf_counter() - started
        print(f"\n[devnet fixture] anvil on {node.rpc_url}, ready in {info_setup:.2f} s")
        yield info
    finally:
        node.stop()


@pytest.fixture
async def chain(devnet: DevnetInfo) -> AsyncIterator[DevnetInfo]:
    """The devnet, with every change the test makes rolled back afterwards."""
    async with open_rpc(devnet.rpc_url, timeout=30.0) as rpc:
        snapshot = await rpc.call("evm_snapshot", [])
        try:
            yield devnet
        finally:
            with trio.CancelScope(shield=True):
                await rpc.call("anvil_dropAllTransactions", [])
                if not await rpc.call("evm_revert", [snapshot]):
                    raise RuntimeError(f"evm_revert({snapshot}) failed: later tests would see this test's state")
