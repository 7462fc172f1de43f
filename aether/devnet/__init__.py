"""The embedded local chain: anvil, real Uniswap V2 contracts, victim traffic, a local builder.

``aether devnet`` (:func:`devnet_main`) and the library entry :func:`run_devnet`
start anvil with on-demand, arrival-ordered mining, deploy WETH9, four tokens
(one with 6 decimals) and two Uniswap V2 DEXes from the npm packages' bytecode,
seed pools a little out of line between the DEXes, fund a searcher account and
many victim accounts, then mine a block every few seconds while victims swap.
Tests use :class:`AnvilProcess` and :func:`deploy` through ``tests/conftest.py``.
"""

from ._anvil import AnvilEndpoint, AnvilProcess, anvil_binary, free_port, run_anvil
from ._deploy import (
    DevnetInfo,
    PairInfo,
    chain_toml,
    create2_pair_address,
    deploy,
    load_artifact,
    mine_until_included,
    pair_init_code_hash,
    victim_account,
)
from ._replay import CandidateReplayer, ReplayHarness, ReplayOutcome, ReplayReport, replay_main, run_replay
from ._run import ENV_KEYS, DevnetReady, devnet_main, env_file_text, run_devnet
from ._traffic import KINDS, SWAP_KINDS, SentTx, TrafficStatistics, VictimTraffic

__all__ = [
    "ENV_KEYS",
    "KINDS",
    "SWAP_KINDS",
    "AnvilEndpoint",
    "AnvilProcess",
    "CandidateReplayer",
    "DevnetInfo",
    "DevnetReady",
    "PairInfo",
    "ReplayHarness",
    "ReplayOutcome",
    "ReplayReport",
    "SentTx",
    "TrafficStatistics",
    "VictimTraffic",
    "anvil_binary",
    "chain_toml",
    "create2_pair_address",
    "deploy",
    "devnet_main",
    "env_file_text",
    "free_port",
    "load_artifact",
    "mine_until_included",
    "pair_init_code_hash",
    "replay_main",
    "run_replay",
    "run_anvil",
    "run_devnet",
    "victim_account",
]
