"""The devnet against a real anvil: deployment, traffic, WS visibility, fifo order, the CLI.

Everything here talks to the real anvil binary from node_modules and the real
Uniswap V2 bytecode from the npm packages; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from trio_websocket import open_websocket_url

from aether._errors import ConfigError
from aether.chain import RpcClient, open_rpc
from aether.config import load_chain_config
from aether.devnet import (
    ENV_KEYS,
    SWAP_KINDS,
    DevnetInfo,
    VictimTraffic,
    anvil_binary,
    create2_pair_address,
    load_artifact,
    mine_until_included,
    pair_init_code_hash,
    victim_account,
)
from aether.devnet import _anvil
from aether.prepare import MAX_UINT256, approve_routers

ETHER = 10**18
GWEI = 10**9
REPO = Path(__file__).resolve().parents[2]
SWAP_TOPIC = "0x" + keccak(text="Swap(address,uint256,uint256,uint256,uint256,address)").hex()


def _sel(sig: str) -> str:
    return "0x" + keccak(text=sig)[:4].hex()


async def _call_uint(rpc: RpcClient, to: str, sig: str, types: list[str], args: list[Any]) -> int:
    data = _sel(sig) + abi_encode(types, args).hex()
    return int(await rpc.call("eth_call", [{"to": to, "data": data}, "latest"]), 16)


# --------------------------------------------------------------------------- no node needed


def test_anvil_binary_override_and_missing_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AETHER_ANVIL_BIN", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="AETHER_ANVIL_BIN"):
        anvil_binary()
    monkeypatch.delenv("AETHER_ANVIL_BIN")
    monkeypatch.setattr(_anvil, "find_in_node_modules", lambda rel: None)
    with pytest.raises(ConfigError, match=r"npm ci --ignore-scripts"):
        anvil_binary()


def test_init_code_hash_is_the_npm_pair_bytecode_and_router_agrees() -> None:
    _, pair_code = load_artifact("UniswapV2Pair")
    _, router_code = load_artifact("UniswapV2Router02")
    ich = pair_init_code_hash()
    assert ich == "0x" + keccak(pair_code).hex()
    # Router02's pairFor has the hash baked in; the devnet only works if they agree.
    assert bytes.fromhex(ich[2:]) in router_code


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to run solc-js")
def test_committed_token_artifact_matches_a_fresh_solc_js_compile() -> None:
    contracts = REPO / "aether" / "devnet" / "contracts"
    fresh = subprocess.run(
        ["node", str(contracts / "compile.js")], cwd=REPO, capture_output=True, check=True, timeout=120
    )
    compiled = json.loads(fresh.stdout)
    committed = json.loads((contracts / "DevToken6.json").read_text())
    assert compiled["bytecode"] == committed["bytecode"]
    assert compiled["abi"] == committed["abi"]
    assert len(committed["bytecode"]) > 1000


# --------------------------------------------------------------------------- deployment


@pytest.mark.devnet
async def test_pools_deployed_at_create2_addresses_with_gaps_between_dexes(chain: DevnetInfo) -> None:
    info = chain
    ich = pair_init_code_hash()
    assert {d.init_code_hash for d in info.dexes} == {ich}
    assert [d.name for d in info.dexes] == ["uniswap", "sushiswap"]
    assert len(info.pairs) == 12
    async with open_rpc(info.rpc_url) as rpc:
        reserves: dict[tuple[str, str, str], tuple[int, int]] = {}
        for p in info.pairs:
            factory = info.dex(p.dex).factory
            got = await rpc.call(
                "eth_call",
                [{"to": factory, "data": _sel("getPair(address,address)") + abi_encode(["address", "address"], [p.token1, p.token0]).hex()}, "latest"],
            )
            assert "0x" + got[-40:] == p.address == create2_pair_address(factory, p.token0, p.token1, ich)
            raw = await rpc.call("eth_call", [{"to": p.address, "data": _sel("getReserves()")}, "latest"])
            r0, r1, _ = abi_decode(["uint112", "uint112", "uint32"], bytes.fromhex(raw[2:]))
            assert r0 > 0 and r1 > 0
            reserves[(p.dex, p.token0, p.token1)] = (r0, r1)
        # Each WETH pool is 0.3%..1.5% off between the two DEXes (integer math, bps).
        for t in info.tokens:
            t0, t1 = sorted((info.weth, t.address))
            u0, u1 = reserves[("uniswap", t0, t1)]
            s0, s1 = reserves[("sushiswap", t0, t1)]
            gap_bps = abs(u1 * s0 * 10_000 // (u0 * s1) - 10_000)
            assert 25 <= gap_bps <= 155, (t.symbol, gap_bps)
        # Router02's pairFor (hard-coded hash) finds our pools: a quote works on both routers.
        usdc = info.token("USDC").address
        for d in info.dexes:
            out = await rpc.call(
                "eth_call",
                [{"to": d.router, "data": _sel("getAmountsOut(uint256,address[])") + abi_encode(["uint256", "address[]"], [ETHER, [info.weth, usdc]]).hex()}, "latest"],
            )
            amounts = abi_decode(["uint256[]"], bytes.fromhex(out[2:]))[0]
            assert 2_900 * 10**6 < amounts[1] < 3_100 * 10**6


@pytest.mark.devnet
async def test_six_decimals_token_searcher_funding_config_and_key_file(chain: DevnetInfo) -> None:
    info = chain
    usdc = info.token("USDC")
    assert usdc.decimals == 6
    assert sorted(t.decimals for t in info.tokens) == [6, 18, 18, 18]
    async with open_rpc(info.rpc_url) as rpc:
        assert await _call_uint(rpc, usdc.address, "decimals()", [], []) == 6
        assert await _call_uint(rpc, info.weth, "balanceOf(address)", ["address"], [info.searcher_address]) == 50 * ETHER
        eth = int(await rpc.call("eth_getBalance", [info.searcher_address, "latest"]), 16)
        assert 99 * ETHER < eth <= 100 * ETHER
        for asset in (info.weth, *(t.address for t in info.tokens)):
            for d in info.dexes:
                allowance = await _call_uint(
                    rpc, asset, "allowance(address,address)", ["address", "address"], [info.searcher_address, d.router]
                )
                assert allowance >= 2**255
    assert load_chain_config(info.config_path) == info.chain_config
    assert info.searcher_key_file.stat().st_mode & 0o777 == 0o600
    key = info.searcher_key_file.read_text().strip()
    assert Account.from_key(key).address.lower() == info.searcher_address


@pytest.mark.devnet
async def test_approve_routers_skips_existing_allowances_and_grants_missing_ones(chain: DevnetInfo) -> None:
    info = chain
    searcher = Account.from_key(info.searcher_key_file.read_text().strip())
    victim = victim_account(info.seed, 0)  # has token approvals from deploy, none on WETH
    async with open_rpc(info.rpc_url) as rpc:
        assert await approve_routers(rpc, searcher, info.chain_config) == []
        hashes = await approve_routers(rpc, victim, info.chain_config)
        assert len(hashes) == len(info.dexes)  # WETH x 2 routers; the tokens were already approved
        await mine_until_included(rpc, hashes)
        for d in info.dexes:
            allowance = await _call_uint(
                rpc, info.weth, "allowance(address,address)", ["address", "address"], [victim.address, d.router]
            )
            assert allowance == MAX_UINT256
        assert await approve_routers(rpc, victim, info.chain_config) == []


# --------------------------------------------------------------------------- traffic


@pytest.mark.devnet
async def test_all_six_swap_functions_run_through_router02_and_the_revert_ones_revert(chain: DevnetInfo) -> None:
    info = chain
    routers = {d.router for d in info.dexes}
    async with open_rpc(info.rpc_url, timeout=10) as rpc:
        traffic = VictimTraffic(rpc, info, seed=7)
        sent = []
        for dex in info.dexes:
            for kind in SWAP_KINDS:
                sent.append(await traffic.send_tx(kind, revert=False, dex=dex.name))
        for kind in SWAP_KINDS:
            sent.append(await traffic.send_tx(kind, revert=True))
        sent.append(await traffic.send_tx("transfer"))
        await rpc.call("evm_mine", [])
        for s in sent:
            h = "0x" + s.hash.hex()
            receipt = await rpc.call("eth_getTransactionReceipt", [h])
            tx = await rpc.call("eth_getTransactionByHash", [h])
            assert receipt is not None, s.kind
            if s.kind == "transfer":
                assert receipt["status"] == "0x1" and tx["input"] == "0x"
                continue
            assert tx["to"] in routers and tx["input"].startswith(_sel(_signature(s.kind)))
            swaps = [log for log in receipt["logs"] if log["topics"][0] == SWAP_TOPIC]
            if s.expect_revert:
                assert receipt["status"] == "0x0", s
                assert swaps == []
            else:
                assert receipt["status"] == "0x1", s
                assert len(swaps) == len(s.path) - 1  # one Swap event per hop, from the real pairs
    stats = traffic.statistics()
    assert dict(stats.by_kind)["transfer"] == 1 and stats.expected_reverts == 6 and stats.refused == 0


def _signature(kind: str) -> str:
    from aether.devnet._traffic import _SIGNATURES

    return _SIGNATURES[kind]


@pytest.mark.devnet
async def test_random_traffic_mixes_kinds_types_hops_and_rarely_reverts_by_accident(chain: DevnetInfo) -> None:
    info = chain
    async with open_rpc(info.rpc_url, timeout=10) as rpc:
        traffic = VictimTraffic(rpc, info, seed=3)
        sent = []
        for i in range(60):
            sent.append(await traffic.send_tx())
            if i % 12 == 11:  # several victims per block, as in the running devnet
                await rpc.call("evm_mine", [])
        await rpc.call("evm_mine", [])
        statuses = []
        types = set()
        for s in sent:
            h = "0x" + s.hash.hex()
            receipt = await rpc.call("eth_getTransactionReceipt", [h])
            tx = await rpc.call("eth_getTransactionByHash", [h])
            types.add(int(tx["type"], 16))
            if s.kind == "transfer":
                assert tx["input"] == "0x"
            statuses.append((s.expect_revert, receipt["status"] == "0x1"))
    assert types == {0, 1, 2}
    assert {s.kind for s in sent} >= {"transfer", *SWAP_KINDS}
    assert any(len(s.path) == 3 for s in sent), "no multi-hop swap"
    assert sum(1 for s in sent if s.expect_revert) >= 2
    # every deliberate revert reverts; every other transaction succeeds
    assert all(ok != expect_revert for expect_revert, ok in statuses), statuses
    sizes = sorted(s.size_wei for s in sent if s.kind != "transfer")
    assert sizes[-1] > 10 * sizes[len(sizes) // 2], "sizes are not heavy-tailed"


@pytest.mark.devnet
async def test_ws_subscriber_receives_victim_transactions_as_full_objects(chain: DevnetInfo) -> None:
    info = chain
    routers = {d.router for d in info.dexes}
    async with open_rpc(info.rpc_url, timeout=10) as rpc, open_websocket_url(info.ws_url) as ws:
        await ws.send_message(
            orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newPendingTransactions", True]}).decode()
        )
        with trio.fail_after(10):
            reply = orjson.loads(await ws.get_message())
        sub_id = reply["result"]
        traffic = VictimTraffic(rpc, info, seed=11)
        sent = {}
        for kind in ("swapExactETHForTokens", "swapTokensForExactTokens", "transfer"):
            s = await traffic.send_tx(kind, revert=False)
            sent["0x" + s.hash.hex()] = s
        seen: dict[str, dict[str, Any]] = {}
        with trio.fail_after(10):
            while set(sent) - set(seen):
                msg = orjson.loads(await ws.get_message())
                assert msg["params"]["subscription"] == sub_id
                obj = msg["params"]["result"]
                assert isinstance(obj, dict), "expected a full transaction object, got a hash"
                seen[obj["hash"]] = obj
    for h, s in sent.items():
        obj = seen[h]
        assert obj["from"].lower() == s.sender
        assert int(obj["nonce"], 16) >= 0 and obj["input"] and "gas" in obj and "r" in obj
        if s.kind != "transfer":
            assert obj["to"].lower() in routers and obj["input"].startswith(_sel(_signature(s.kind)))


@pytest.mark.devnet
async def test_fifo_order_lets_an_earlier_low_tip_transaction_go_first(chain: DevnetInfo) -> None:
    info = chain
    async with open_rpc(info.rpc_url) as rpc:
        base = int((await rpc.call("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"], 16)
        hashes = []
        # Tips rise with arrival: under the default "fees" order the last would be mined first.
        for i, tip in enumerate((GWEI // 10, 5 * GWEI, 50 * GWEI)):
            acct = victim_account(info.seed, 30 + i)
            nonce = int(await rpc.call("eth_getTransactionCount", [acct.address, "pending"]), 16)
            signed = acct.sign_transaction(
                {
                    "type": 2,
                    "chainId": info.chain_id,
                    "nonce": nonce,
                    "to": to_checksum_address(info.deployer),
                    "value": 1,
                    "gas": 21_000,
                    "maxPriorityFeePerGas": tip,
                    "maxFeePerGas": 2 * base + tip,
                }
            )
            hashes.append(await rpc.call("eth_sendRawTransaction", ["0x" + signed.raw_transaction.hex()]))
        receipts = await mine_until_included(rpc, hashes)
    assert len({r["blockNumber"] for r in receipts}) == 1
    assert [int(r["transactionIndex"], 16) for r in receipts] == [0, 1, 2]


# --------------------------------------------------------------------------- the command


@pytest.mark.devnet
async def test_devnet_main_writes_env_file_streams_victims_and_exits_0_on_sigint(tmp_path: Path) -> None:
    env_file = tmp_path / "devnet.env"
    code = "import sys; from aether.devnet import devnet_main; sys.exit(devnet_main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, "--port", "0", "--workdir", str(tmp_path / "wd"), "--env-file", str(env_file),
            "--block-time", "0.5", "--tx-rate", "20"]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(30):
            while b"Ctrl-C stops everything" not in buf:
                chunk = await proc.stdout.receive_some(65536)
                assert chunk, f"devnet exited early: {buf.decode(errors='replace')}"
                buf += chunk
        assert b"ready in" in buf
        env = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#")
        )
        assert set(env) == set(ENV_KEYS)
        assert all(env[k] for k in ENV_KEYS), env
        assert env["AETHER_BUILDER_URLS"].startswith("local=http://127.0.0.1:")
        assert load_chain_config(Path(env["AETHER_CONFIG"])).dexes
        assert Path(env["AETHER_SIGNER_KEY_FILE"]).stat().st_mode & 0o777 == 0o600
        # the running traffic reaches a WS subscriber as full transaction objects
        async with open_websocket_url(env["AETHER_WS_URL"]) as ws:
            await ws.send_message('{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions",true]}')
            with trio.fail_after(10):
                assert "result" in orjson.loads(await ws.get_message())
                note = orjson.loads(await ws.get_message())
        assert isinstance(note["params"]["result"], dict) and "input" in note["params"]["result"]
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(15):
            rc = await proc.wait()
        assert rc == 0
        # anvil went down with it
        with pytest.raises(httpx.TransportError):
            httpx.post(env["AETHER_RPC_URL"], json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=2)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
