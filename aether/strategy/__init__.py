"""Finding and checking opportunities: backrun sizing, the block-driven source, exact validation."""

from ._backrun import (
    DEADLINE_S,
    GAS_PER_SWAP,
    BackrunStrategy,
    Rejection,
    StrategyStatistics,
    build_round_trip,
    size_best_round_trip,
)
from ._block_arb import BlockArbStrategy
from ._poststate import (
    PoolKind,
    PoolPostState,
    PoolTrust,
    PostState,
    ScreenSkip,
    SimFailure,
    V2Reserves,
    VictimSimulator,
    VictimSimulatorStatistics,
)
from ._screen import Prefilter, ScreenHint, SimBudget
from ._validate import Validator, ValidatorStatistics

__all__ = [
    "DEADLINE_S",
    "GAS_PER_SWAP",
    "BackrunStrategy",
    "BlockArbStrategy",
    "PoolKind",
    "PoolPostState",
    "PoolTrust",
    "PostState",
    "Prefilter",
    "ScreenHint",
    "ScreenSkip",
    "SimBudget",
    "SimFailure",
    "V2Reserves",
    "VictimSimulator",
    "VictimSimulatorStatistics",
    "Rejection",
    "StrategyStatistics",
    "Validator",
    "ValidatorStatistics",
    "build_round_trip",
    "size_best_round_trip",
]
