"""The exceptions aether raises, one class per condition.

Each docstring says who caused the condition. Library exceptions (httpx,
h11, eth-abi) are translated at the adapter edge into these,
``raise Ours(...) from exc``, so callers never catch a library's types.

    AetherError
    ├── ConfigError            the operator: a variable, file or key is wrong
    ├── NodeError              the Ethereum node
    │   ├── NodeUnreachable    connection refused, DNS, TLS, reset
    │   ├── NodeTimeout        no whole answer within the request's total deadline
    │   ├── RpcError           the node answered with a JSON-RPC error object
    │   ├── BadNodeData        the node answered, but not with what we asked for
    │   │   └── ResponseTooLarge   an answer longer than the size cap (not buffered)
    │   └── NodeSilent         no usable head for longer than the grace: exit 3
    ├── DecodeError            bytes from outside (tx, calldata) that do not parse
    ├── BuilderError           a block builder endpoint (live mode only)
    └── RiskError              a gate could not be evaluated; fails closed
        └── ShadowViolation    something tried to submit while shadow mode is on

Node failures are also counted by kind (:class:`NodeErrorKind`, the label of
``aether_node_errors_total{kind}``).
"""

from __future__ import annotations

import enum

__all__ = [
    "AetherError",
    "BadNodeData",
    "BuilderError",
    "ConfigError",
    "DecodeError",
    "NodeError",
    "NODE_TEXT_SHOWN",
    "NodeErrorKind",
    "NodeSilent",
    "NodeTimeout",
    "NodeUnreachable",
    "ResponseTooLarge",
    "RiskError",
    "RpcError",
    "ShadowViolation",
    "node_text",
]


class NodeErrorKind(enum.StrEnum):
    """Why a node interaction failed: the bounded ``kind`` label of ``aether_node_errors_total``."""

    TIMEOUT = "timeout"  # a request's total deadline passed (slow or trickling answer, hang)
    UNREACHABLE = "unreachable"  # refused, reset, DNS, TLS
    BAD_DATA = "bad_data"  # not JSON, or not the shape asked for
    TOO_LARGE = "too_large"  # an answer longer than AETHER_RPC_MAX_RESPONSE_BYTES
    MALFORMED_HEAD = "malformed_head"  # a newHeads frame that does not parse as a head
    SILENT = "silent"  # no usable head within AETHER_NODE_SILENCE_GRACE_SEC


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


#: How much of a text the node chose (an error message) is shown in an exception's text or a log line.
NODE_TEXT_SHOWN = 300


def node_text(text: str, limit: int = NODE_TEXT_SHOWN) -> str:
    """``text`` from the node as it may be shown: on one line (a newline cannot forge a log line)
    and at most ``limit`` characters, with the full length said (a node may send megabytes)."""
    one_line = " ".join(text[: limit * 2].split())
    if len(text) <= limit and len(one_line) <= limit:
        return one_line
    return f"{one_line[:limit]}... ({len(text)} chars)"


class RpcError(NodeError):
    """The node answered with a JSON-RPC error object.

    ``message`` keeps the node's text whole (callers match on it); the exception's own
    text, which is what logs show, has it through :func:`node_text`.
    """

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: error {code}: {node_text(message)}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class BadNodeData(NodeError):
    """The node answered, but the answer is not JSON or not of the expected shape."""


class ResponseTooLarge(BadNodeData):
    """The node's answer was longer than the configured cap.

    Reading stopped at the cap (the rest was never buffered) and the connection
    was dropped. A subclass of :class:`BadNodeData`, not of :class:`RpcError`: the
    whole HTTP answer is lost, so callers must treat it like garbage from the node
    (fail closed), never like a per-call refusal such as a revert.
    """


class NodeSilent(NodeError):
    """The node sent no usable head (silence, or only malformed heads) for longer than the grace.

    Raised by the run's watchdog; ``aether run`` exits 3 so the OS supervisor can
    restart it against a node that may have recovered, instead of idling forever.
    """


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
