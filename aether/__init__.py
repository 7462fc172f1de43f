"""aether: public-mempool backrun MEV on Uniswap-V2-style pools, shadow-first.

The public surface is small: settings, messages and errors. Everything else
lives in subpackages that follow the architecture (chain, dex, strategy, risk,
actors, devnet) and in ``supervisors`` beside this package.
"""

from ._errors import (
    AetherError,
    BadNodeData,
    BuilderError,
    ConfigError,
    DecodeError,
    NodeError,
    NodeTimeout,
    NodeUnreachable,
    RiskError,
    RpcError,
    ShadowViolation,
)

__version__ = "0.1.0"

__all__ = [
    "AetherError",
    "BadNodeData",
    "BuilderError",
    "ConfigError",
    "DecodeError",
    "NodeError",
    "NodeTimeout",
    "NodeUnreachable",
    "RiskError",
    "RpcError",
    "ShadowViolation",
    "__version__",
]
