"""The same candidate path written the idiomatic web3.py way, for the side-by-side figure.

Per frame: web3's JSON decoding (``FriendlyJsonSerde``) and its transaction
result formatters, the router filter on checksum addresses, the victim's raw
bytes rebuilt and hash-checked through eth-account's transaction classes,
``contract.decode_function_input``, then the sizing, the two legs' calldata
through ``contract.encode_abi``, ``Account.sign_transaction`` for each and the
same :class:`~aether.risk.RiskEngine`.

The sizing step is aether's own ``BackrunStrategy.on_victim`` (there is no
web3 way of doing V2 math); it re-decodes the calldata and encodes the legs
with aether's fast code, a few microseconds that this path pays on top of the
web3 work and that make the ratio a little *kinder* to web3.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account._utils.legacy_transactions import encode_transaction, serializable_unsigned_transaction_from_dict
from eth_account.typed_transactions import TypedTransaction
from eth_utils import apply_formatters_to_dict, keccak, to_checksum_address
from web3 import Web3
from web3._utils.encoding import FriendlyJsonSerde
from web3._utils.method_formatters import TRANSACTION_RESULT_FORMATTERS

from aether.bundle import BundleBuilder, arb_id
from aether.messages import Bundle, Call, Candidate, PendingTx

from ._inproc import Rig

_ROUTER_ABI = Path("node_modules/@uniswap/v2-periphery/build/IUniswapV2Router02.json")


def _router_abi() -> list[dict[str, Any]]:
    doc = json.loads(_ROUTER_ABI.read_text())
    return doc["abi"] if isinstance(doc, dict) else doc  # type: ignore[no-any-return]


class Web3Path:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.w3 = Web3()
        self.router = self.w3.eth.contract(abi=_router_abi())
        self.routers = {to_checksum_address(d.router) for d in rig.market.chain.dexes}
        self.serde = FriendlyJsonSerde()
        self.account = Account.from_key(rig.account.key)

    def _victim(self, message: bytes) -> PendingTx | None:
        note = self.serde.json_decode(message.decode())
        tx = apply_formatters_to_dict(TRANSACTION_RESULT_FORMATTERS, note["params"]["result"])
        if tx.get("to") not in self.routers:
            return None
        fields = {k: tx[k] for k in ("nonce", "gas", "to", "value", "chainId") if k in tx}
        fields["data"] = tx["input"]
        if tx["type"] == 0:
            fields["gasPrice"] = tx["gasPrice"]
            unsigned = serializable_unsigned_transaction_from_dict(fields)
            raw = encode_transaction(unsigned, vrs=(tx["v"], int.from_bytes(tx["r"], "big"),
                                                    int.from_bytes(tx["s"], "big")))
        else:
            fields["type"] = tx["type"]
            fields["accessList"] = tx.get("accessList", [])
            if tx["type"] == 2:
                fields["maxFeePerGas"] = tx["maxFeePerGas"]
                fields["maxPriorityFeePerGas"] = tx["maxPriorityFeePerGas"]
            else:
                fields["gasPrice"] = tx["gasPrice"]
            fields.update(v=tx["v"], r=int.from_bytes(tx["r"], "big"), s=int.from_bytes(tx["s"], "big"))
            raw = TypedTransaction.from_dict(fields).encode()
        if keccak(raw) != bytes(tx["hash"]):
            return None
        func, params = self.router.decode_function_input(tx["input"])
        self.last_decoded = (func.fn_name, params)
        return PendingTx(hash=bytes(tx["hash"]), raw=raw, type=tx["type"], chain_id=tx.get("chainId"),
                         nonce=tx["nonce"], sender=tx["from"].lower(), to=tx["to"].lower(), value=tx["value"],
                         input=bytes(tx["input"]), gas=tx["gas"], gas_price=tx.get("gasPrice"),
                         max_fee_per_gas=tx.get("maxFeePerGas"),
                         max_priority_fee_per_gas=tx.get("maxPriorityFeePerGas"))

    async def candidate_path(self, message: bytes) -> Any:
        rig = self.rig
        victim = self._victim(message)
        if victim is None:
            return None
        result = await rig.strategy.on_victim(victim, rig.head, inventory_wei=rig.tick.weth_balance_wei or 0)
        if not isinstance(result, Candidate):
            return result
        # The legs' calldata the web3 way.
        calls = []
        for hop in result.route:
            data = self.router.encode_abi(
                "swapExactTokensForTokens",
                args=[hop.amount_in, hop.amount_out, [to_checksum_address(hop.token_in),
                                                      to_checksum_address(hop.token_out)],
                      self.account.address, rig.head.timestamp + 120],
            )
            calls.append(Call(to=hop.router, data=bytes.fromhex(data[2:])))
        # Sign the web3 way: the same money math as BundleBuilder, Account.sign_transaction per leg.
        b: BundleBuilder = rig.builder
        gas_used = result.gas_estimate
        gas_each = gas_used // len(calls)
        base_fee = rig.tick.next_base_fee
        gross = result.expected_gross_profit_wei
        priority = (gross * b.tip_share_bps // 10000) // gas_used
        max_fee = 2 * base_fee + priority
        nonces = rig.nonces.reserve(len(calls))
        signed = [
            self.account.sign_transaction({
                "type": 2, "chainId": b.chain_id, "nonce": nonce, "to": to_checksum_address(call.to),
                "value": 0, "data": call.data, "gas": gas_each * 12 // 10,
                "maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority, "accessList": [],
            })
            for call, nonce in zip(calls, nonces, strict=True)
        ]
        target = rig.head.number + 1
        bundle = Bundle(
            arb_id=arb_id(target, result.victim_hash_hex, result.route), source=result.source, candidate=result,
            target_block=target, built_at=str(time.time_ns()),
            envelope=(victim.raw, *(bytes(t.raw_transaction) for t in signed)),
            our_tx_hashes=tuple(bytes(t.hash) for t in signed), expected_gross_profit_wei=gross,
            expected_net_profit_wei=gross - gas_used * (base_fee + priority),
            tip_share_bps=priority * gas_used * 10000 // gross, gas_used=gas_used, base_fee_wei=base_fee,
            priority_fee_wei=priority, max_fee_per_gas_wei=max_fee, signer=self.account.address,
            nonces=tuple(nonces),
        )
        # Gate through the same risk engine.
        verdict = rig.risk.evaluate(bundle)
        if verdict.passed:
            rig.risk.commit(verdict)
        rig._since_head += 1
        return verdict
