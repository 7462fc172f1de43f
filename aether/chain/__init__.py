"""Talking to the Ethereum node: JSON-RPC, WebSocket subscriptions, tx codec, fees."""

from ._rpc import RpcClient, RpcStatistics, open_rpc

__all__ = ["RpcClient", "RpcStatistics", "open_rpc"]
