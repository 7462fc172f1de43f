"""The actors of the pipeline, one module each, each owning its state.

heads + intake (sources) -> strategy -> validate -> build -> risk -> end of line.
The end of the line is :class:`ShadowSink` in shadow mode; in live mode it is
the submit actor in ``aether.submit``, which the shadow path never imports.
"""

from ._build import BuilderActor
from ._dumping import DumpWriter
from ._inflight import AppendOnlyFile, InFlightActor, InFlightLedger, SettlementFile
from ._risk import Feedback, HaltRequest, RiskActor, ask_risk
from ._shadow import ShadowSink
from ._sources import HeadsActor, IntakeActor, IntakeSkip, RecentHashes, balance_calls
from ._strategy import StrategyActor
from ._validate import ValidatorActor

__all__ = [
    "AppendOnlyFile",
    "BuilderActor",
    "DumpWriter",
    "Feedback",
    "HaltRequest",
    "HeadsActor",
    "InFlightActor",
    "InFlightLedger",
    "IntakeActor",
    "IntakeSkip",
    "RecentHashes",
    "RiskActor",
    "SettlementFile",
    "ShadowSink",
    "StrategyActor",
    "ValidatorActor",
    "ask_risk",
    "balance_calls",
]
