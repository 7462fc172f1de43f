"""Talking to the Ethereum node: JSON-RPC, WebSocket subscriptions, tx codec, fees."""

from ._fees import BASE_FEE_MAX_CHANGE_DENOMINATOR, ELASTICITY_MULTIPLIER, head_from_rpc, next_base_fee
from ._rpc import RpcClient, RpcStatistics, open_rpc
from ._tx import SUPPORTED_TX_TYPES, decode_pending_tx, encode_signed_tx, keccak256
from ._ws import HEADS, PENDING, Frame, FrameSink, StreamOpener, Subscriber, SubscriberStatistics, SubscriptionKind

__all__ = [
    "BASE_FEE_MAX_CHANGE_DENOMINATOR",
    "ELASTICITY_MULTIPLIER",
    "HEADS",
    "PENDING",
    "SUPPORTED_TX_TYPES",
    "Frame",
    "FrameSink",
    "RpcClient",
    "RpcStatistics",
    "StreamOpener",
    "Subscriber",
    "SubscriberStatistics",
    "SubscriptionKind",
    "decode_pending_tx",
    "encode_signed_tx",
    "head_from_rpc",
    "keccak256",
    "next_base_fee",
    "open_rpc",
]
