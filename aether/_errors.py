"""The exceptions aether raises, one class per condition.

Each docstring says who caused the condition. Library exceptions (httpx,
h11, eth-abi) are translated at the adapter edge into these,
``raise Ours(...) from exc``, so callers never catch a library's types.

    AetherError
    ├── ConfigError            the operator: a variable, file or key is wrong
    ├── NodeError              the Ethereum node
    │   ├── NodeUnreachable    connection refused, DNS, TLS, reset
    │   ├── NodeTimeout        no answer within the deadline
    │   ├── RpcError           the node answered with a JSON-RPC error object
    │   └── BadNodeData        the node answered, but not with what we asked for
    ├── DecodeError            bytes from outside (tx, calldata) that do not parse
    ├── BuilderError           a block builder endpoint (live mode only)
    └── RiskError              a gate could not be evaluated; fails closed
        └── ShadowViolation    something tried to submit while shadow mode is on
"""

from __future__ import annotations

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
]


class AetherError(Exception):
    """Base class of every exception aether raises on purpose."""


class ConfigError(AetherError):
    """The operator's configuration is wrong.

    The message is one line naming the variable (or file), the value seen and
    what was expected; ``aether`` prints it and exits 2. Secrets are never put
    into the message, only the name of the file or variable that holds them.
    """


class NodeError(AetherError):
    """The Ethereum node failed us."""


class NodeUnreachable(NodeError):
    """The node could not be reached (refused, reset, DNS, TLS)."""


class NodeTimeout(NodeError):
    """The node did not answer within the deadline."""


class RpcError(NodeError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class BadNodeData(NodeError):
    """The node answered, but the answer is not JSON or not of the expected shape."""


class DecodeError(AetherError):
    """Bytes from outside (a pending transaction, calldata) do not parse.

    Raised by pure decoders; actors turn it into a counted rejection under
    ``reason``, a short bounded label (a metric label value, never data).
    """

    def __init__(self, message: str, reason: str = "bad_fields") -> None:
        super().__init__(message)
        self.reason = reason


class BadQuantity(DecodeError, ValueError):
    """A hex quantity from the node is not ``0x`` + hex digits within bounds.

    Also a :class:`ValueError`, as ``int(x, 16)`` raised before it, so every
    handler written for that still catches it.
    """


class BuilderError(AetherError):
    """A block builder endpoint failed (HTTP status, bad JSON, timeout)."""


class RiskError(AetherError):
    """A risk gate could not be evaluated. Callers fail closed on it."""


class ShadowViolation(RiskError):
    """Code tried to construct a submitter or send a bundle while shadow mode is on.

    This is a bug in aether, never an operator error: the shadow supervision
    tree does not contain a submitter at all.
    """
