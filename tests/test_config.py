"""Settings.from_env: every variable's default, a valid override, and a rejected value.

A rejection is a ConfigError whose one-line message names the variable and the
value (URLs only up to the host: they may carry API keys).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aether._errors import ConfigError
from aether.config import MAINNET, BuilderEndpoint, Settings, load_chain_config, parse_wei

GWEI = 10**9
ETHER = 10**18

Get = Callable[[Settings], Any]

# (variable, getter, default, valid override, parsed override, rejected value)
CASES: list[tuple[str, Get, Any, str, Any, str]] = [
    # the seed's variables
    ("AETHER_REPORTS_DIR", lambda s: s.reports_dir, Path("reports"), "/tmp/aether-runs", Path("/tmp/aether-runs"),
     "/etc/hostname"),
    ("AETHER_MEMPOOL_MIN_PROFIT_WEI", lambda s: s.risk.min_profit_wei, 10**15, "5e16", 5 * 10**16, "1.5e0"),
    ("AETHER_MEMPOOL_MAX_TIP_BPS", lambda s: s.risk.max_tip_bps, 9500, "10000", 10000, "10001"),
    ("AETHER_MEMPOOL_VICTIM_FRESHNESS_MS", lambda s: s.risk.victim_freshness_ms, 500, "250", 250, "0"),
    ("AETHER_MEMPOOL_MAX_INFLIGHT", lambda s: s.risk.max_inflight, 5, "12", 12, "0"),
    ("MEMPOOL_TRACKING", lambda s: s.mempool_tracking, False, "1", True, "yes"),
    # ours
    ("AETHER_WS_URL", lambda s: s.ws_url, "ws://127.0.0.1:8545", "wss://node.example:8546/ws",
     "wss://node.example:8546/ws", "http://127.0.0.1:8545"),
    ("AETHER_RPC_URL", lambda s: s.rpc_url, "http://127.0.0.1:8545", "https://node.example/rpc",
     "https://node.example/rpc", "ws://127.0.0.1:8545"),
    ("AETHER_METRICS_ADDR", lambda s: s.metrics_addr, ("127.0.0.1", 9477), "127.0.0.2:9100", ("127.0.0.2", 9100),
     "9100"),
    ("AETHER_RISK_MAX_GAS_PRICE_WEI", lambda s: s.risk.max_gas_price_wei, 300 * GWEI, "5e11", 500 * GWEI, "0"),
    ("AETHER_RISK_MIN_BALANCE_WEI", lambda s: s.risk.min_balance_wei, ETHER // 10, "2e17", 2 * ETHER // 10, "-1"),
    ("AETHER_RISK_DAILY_LOSS_LIMIT_WEI", lambda s: s.risk.daily_loss_limit_wei, ETHER // 2, "1e18", ETHER, "0"),
    ("AETHER_RISK_MAX_REVERTS", lambda s: s.risk.max_reverts, 3, "5", 5, "0"),
    ("AETHER_RISK_REVERT_WINDOW_SEC", lambda s: s.risk.revert_window_s, 600, "60", 60, "0"),
    ("AETHER_RISK_PAUSE_SEC", lambda s: s.risk.pause_s, 600, "30", 30, "30s"),
    ("AETHER_TIP_SHARE_BPS", lambda s: s.tip_share_bps, 8000, "9000", 9000, "10001"),
    ("AETHER_VALIDATE", lambda s: s.validate, True, "0", False, "false"),
    ("AETHER_BLOCK_ARB", lambda s: s.block_arb, True, "0", False, "no"),
    ("AETHER_RPC_TIMEOUT_MS", lambda s: s.rpc_timeout_s, 2.0, "500", 0.5, "0"),
    ("AETHER_BUILDER_TIMEOUT_MS", lambda s: s.builder_timeout_s, 2.0, "1500", 1.5, "-5"),
    ("AETHER_RPC_MAX_RESPONSE_BYTES", lambda s: s.rpc_max_response_bytes, 16 * 1024 * 1024, "1048576", 1048576,
     "1k"),
    ("AETHER_NODE_SILENCE_GRACE_SEC", lambda s: s.node_silence_grace_s, 60.0, "30", 30.0, "1"),
    ("AETHER_LOG_LEVEL", lambda s: s.log_level, "INFO", "debug", "DEBUG", "VERBOSE"),
    ("AETHER_STATE_FILE", lambda s: s.state_file, Path("reports/risk-state.json"), "/tmp/x/state.json",
     Path("/tmp/x/state.json"), "/dev/null"),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize(("name", "get", "default", "valid", "parsed", "bad"), CASES, ids=IDS)
def test_default(name: str, get: Get, default: Any, valid: str, parsed: Any, bad: str) -> None:
    assert get(Settings.from_env({})) == default
    # set but blank counts as unset (an env file's `NAME=` line)
    assert get(Settings.from_env({name: "  "})) == default


@pytest.mark.parametrize(("name", "get", "default", "valid", "parsed", "bad"), CASES, ids=IDS)
def test_valid_override(name: str, get: Get, default: Any, valid: str, parsed: Any, bad: str) -> None:
    assert parsed != default
    assert get(Settings.from_env({name: valid})) == parsed


@pytest.mark.parametrize(("name", "get", "default", "valid", "parsed", "bad"), CASES, ids=IDS)
def test_rejected_value_names_variable_and_value(
    name: str, get: Get, default: Any, valid: str, parsed: Any, bad: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: bad})
    message = str(info.value)
    assert name in message
    assert repr(bad) in message
    assert "\n" not in message


# --------------------------------------------------------------------------- AETHER_SHADOW (invariant 1)


@pytest.mark.parametrize(("env", "shadow"), [({}, True), ({"AETHER_SHADOW": "1"}, True), ({"AETHER_SHADOW": "0"}, False)])
def test_shadow_unset_or_1_is_shadow_and_only_0_is_live(env: dict[str, str], shadow: bool) -> None:
    assert Settings.from_env(env).shadow is shadow


@pytest.mark.parametrize("raw", ["true", "yes", " 0", "0 ", "2", "", "false", "01", "on"])
def test_shadow_anything_else_is_rejected(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AETHER_SHADOW": raw})
    assert f"AETHER_SHADOW={raw!r}" in str(info.value)


def test_shadow_never_loads_the_builder_auth_key_path() -> None:
    env = {"AETHER_FLASHBOTS_AUTH_KEY_FILE": "/keys/fb.hex"}
    assert Settings.from_env(env).flashbots_auth_key_file is None
    assert Settings.from_env({**env, "AETHER_SHADOW": "0"}).flashbots_auth_key_file == Path("/keys/fb.hex")


# --------------------------------------------------------------------------- wei amounts


@pytest.mark.parametrize(
    ("raw", "value"),
    [("5e16", 5 * 10**16), ("1.5e1", 15), ("1e15", 10**15), ("0", 0), ("1000", 1000), ("2E+3", 2000),
     ("1.25e2", 125), (" 7 ", 7), (str(2**256 - 1), 2**256 - 1)],
)
def test_parse_wei_accepts_exact_integers(raw: str, value: int) -> None:
    result = parse_wei("AETHER_MEMPOOL_MIN_PROFIT_WEI", raw)
    assert result == value
    assert type(result) is int


@pytest.mark.parametrize("raw", ["1.5e0", "-1", "0x10", "abc", "1e", "", "1.", ".5", "1e-3", "1_000", "inf",
                                 "nan", str(2**256), "1e100"])
def test_parse_wei_rejects_everything_else(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_wei("AETHER_MEMPOOL_MIN_PROFIT_WEI", raw)
    assert f"AETHER_MEMPOOL_MIN_PROFIT_WEI={raw!r}" in str(info.value)


@pytest.mark.parametrize("raw", ["-1", "0x10", "abc", "1.5e0"])
def test_min_profit_rejections_through_from_env(raw: str) -> None:
    with pytest.raises(ConfigError, match="AETHER_MEMPOOL_MIN_PROFIT_WEI"):
        Settings.from_env({"AETHER_MEMPOOL_MIN_PROFIT_WEI": raw})


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("raw", ["wss://", "ws://", "ws:///path", "ws://:8545"])
def test_ws_url_without_a_host_is_rejected(raw: str) -> None:
    with pytest.raises(ConfigError, match="AETHER_WS_URL"):
        Settings.from_env({"AETHER_WS_URL": raw})


@pytest.mark.parametrize("raw", ["https://", "http://"])
def test_rpc_url_without_a_host_is_rejected(raw: str) -> None:
    with pytest.raises(ConfigError, match="AETHER_RPC_URL"):
        Settings.from_env({"AETHER_RPC_URL": raw})


def test_rejected_url_message_hides_the_path_and_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AETHER_WS_URL": "http://user:pw@node.example/v2/SECRETKEY"})
    message = str(info.value)
    assert "AETHER_WS_URL='http://node.example'" in message
    assert "SECRETKEY" not in message and "pw" not in message


# --------------------------------------------------------------------------- builders


def test_builders_default_none() -> None:
    assert Settings.from_env({}).builders == ()


def test_builders_override_with_and_without_labels() -> None:
    s = Settings.from_env({"AETHER_BUILDER_URLS": "fb=https://relay.flashbots.net, https://rpc.titanbuilder.xyz/k/SECRET"})
    assert s.builders == (
        BuilderEndpoint("fb", "https://relay.flashbots.net"),
        BuilderEndpoint("rpc", "https://rpc.titanbuilder.xyz/k/SECRET"),
    )
    assert "SECRET" not in repr(s.builders) and "SECRET" not in s.builders[1].display


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ftp://relay.example", "AETHER_BUILDER_URLS[0]='ftp://relay.example'"),
        ("https://ok.example,ws://relay.example/KEY", "AETHER_BUILDER_URLS[1]='ws://relay.example'"),
        ("a=https://x.example,a=https://y.example", "AETHER_BUILDER_URLS: builder labels must be unique"),
        ("bad label!=https://x.example", "AETHER_BUILDER_URLS[0]: label 'bad label!'"),
    ],
)
def test_builders_rejected(raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AETHER_BUILDER_URLS": raw})
    assert expected in str(info.value)
    assert "KEY" not in str(info.value)


# --------------------------------------------------------------------------- AETHER_CONFIG

TOML = """
weth = "0x{weth}"

[[dex]]
name = "uniswap"
router = "0x{a}"
factory = "0x{b}"
init_code_hash = "0x{h}"
fee_bps = 30

[[dex]]
name = "sushi"
router = "0x{c}"
factory = "0x{d}"
init_code_hash = "0x{h}"

[[token]]
address = "0x{t}"
symbol = "TKN"
decimals = 6
""".format(weth="C0" * 20, a="aa" * 20, b="bb" * 20, c="cc" * 20, d="dd" * 20, h="12" * 32, t="ee" * 20)


def test_config_default_is_mainnet() -> None:
    s = Settings.from_env({})
    assert s.config_path is None
    assert s.chain == MAINNET
    assert [d.name for d in s.chain.dexes] == ["uniswap", "sushiswap"]


def test_config_override_reads_the_toml(tmp_path: Path) -> None:
    path = tmp_path / "chain.toml"
    path.write_text(TOML)
    s = Settings.from_env({"AETHER_CONFIG": str(path)})
    assert s.config_path == path
    assert s.chain.weth == "0x" + "c0" * 20  # lowercased
    assert [(d.name, d.router, d.fee_bps) for d in s.chain.dexes] == [
        ("uniswap", "0x" + "aa" * 20, 30), ("sushi", "0x" + "cc" * 20, 30)
    ]
    assert s.chain.tokens[0].decimals == 6
    assert s.chain.dex_by_router()["0x" + "cc" * 20].name == "sushi"


def test_config_missing_file_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"AETHER_CONFIG": str(missing)})
    assert f"AETHER_CONFIG={str(missing)!r}" in str(info.value)
    assert "cannot read" in str(info.value)


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: t + "\n[[[broken", "not valid TOML"),
        (lambda t: t.replace('weth = "0x' + "C0" * 20 + '"', 'weth = "0x12"'), "weth='0x12'"),
        (lambda t: t.replace("fee_bps = 30", "fee_bps = 10000"), "dex[0].fee_bps=10000"),
        (lambda t: t.replace('name = "sushi"', 'name = "uniswap"'), "dex names must be unique"),
        (lambda t: t.replace('init_code_hash = "0x' + "12" * 32 + '"', 'init_code_hash = "0x12"', 1),
         "dex[0].init_code_hash='0x12'"),
        (lambda t: t.replace("decimals = 6", "decimals = 99"), "token[0].decimals=99"),
        (lambda t: t.split("[[dex]]")[0], "expected at least one [[dex]] table"),
    ],
)
def test_config_bad_content_names_file_and_key(tmp_path: Path, edit: Callable[[str], str], fragment: str) -> None:
    path = tmp_path / "chain.toml"
    path.write_text(edit(TOML))
    with pytest.raises(ConfigError) as info:
        load_chain_config(path)
    assert f"AETHER_CONFIG={str(path)!r}" in str(info.value)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- misc


def test_reports_dir_that_is_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    s = Settings.from_env({"AETHER_REPORTS_DIR": str(tmp_path)})
    assert s.reports_dir == tmp_path
    assert s.state_file == tmp_path / "risk-state.json"


def test_inline_keys_are_ignored_with_a_warning_that_does_not_echo_them() -> None:
    s = Settings.from_env({"AETHER_SIGNER_KEY": "0x" + "ab" * 32})
    assert len(s.warnings) == 1
    assert "AETHER_SIGNER_KEY" in s.warnings[0]
    assert "ab" * 32 not in s.warnings[0]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("wss://node.example:99999/v3/SECRETKEY", "host or port"),
        ("wss://node.example:85x5/v3/SECRETKEY", "host or port"),
        ("wss://apikey:SECRET/KEY@node.example/v3", "host or port"),  # an unencoded / in a password
        ("wss://node.example/v3/SECRET KEY", "spaces or non-ASCII"),
        ("wss://node.example/v3/SECRETKéY", "spaces or non-ASCII"),
    ],
)
def test_a_url_that_cannot_be_dialled_is_rejected_at_start_without_its_key(raw: str, why: str) -> None:
    for name in ("AETHER_WS_URL", "AETHER_RPC_URL"):
        value = raw if name == "AETHER_WS_URL" else raw.replace("wss://", "https://")
        with pytest.raises(ConfigError, match=why) as info:
            Settings.from_env({name: value})
        assert name in str(info.value) and "SECRET" not in str(info.value)


# --------------------------------------------------------------------------- strictness (issue 12)

import os  # noqa: E402

from aether.config import DexKind, parse_log_level  # noqa: E402

_MIXED = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"  # WETH, a correct EIP-55 checksum


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("AETHER_MEMPOOL_MAX_TIP_BPS", "9" * 5000),  # int() of >4300 digits raised ValueError
        ("AETHER_RISK_PAUSE_SEC", "9" * 30),  # overflowed the pause clock arithmetic
        ("AETHER_RISK_PAUSE_SEC", str(30 * 86_400 + 1)),
        ("AETHER_RISK_REVERT_WINDOW_SEC", "99999999999"),
        ("AETHER_MEMPOOL_MAX_INFLIGHT", "\u0663"),  # ARABIC-INDIC DIGIT THREE
        ("AETHER_MEMPOOL_MAX_INFLIGHT", "\uff13"),  # FULLWIDTH DIGIT THREE
        ("AETHER_METRICS_ADDR", "127.0.0.1:\u0663\u0663"),  # str.isdigit() said yes, int() said no
        ("AETHER_METRICS_ADDR", "127.0.0.1:\u00b2"),  # SUPERSCRIPT TWO: isdigit() yes, int() raised
        ("AETHER_METRICS_ADDR", "127.0.0.1:000009477"),
        ("AETHER_MEMPOOL_MIN_PROFIT_WEI", "1" * 101),
        ("AETHER_MEMPOOL_MIN_PROFIT_WEI", "\u0661e15"),
        ("AETHER_LOG_LEVEL", "LOUD"),
        ("AETHER_REPORTS_DIR", "x" * 300),
        ("AETHER_REPORTS_DIR", "a\0b"),
        ("AETHER_STATE_FILE", "/tmp/" + "y" * 256),
        ("AETHER_CONFIG", "/" + "z/" * 3000),
        ("AETHER_BUILDER_URLS", "https://b.example/" + "k" * 9000),
    ],
)
def test_hostile_values_are_one_line_config_errors(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    message = str(info.value)
    assert message.startswith(name)
    assert "\n" not in message and len(message) < 600


def test_log_level_any_case_and_unknown_refused() -> None:
    assert parse_log_level("warning") == "WARNING"
    assert parse_log_level(None) == "INFO"
    with pytest.raises(ConfigError, match="AETHER_LOG_LEVEL='TRACE': expected one of DEBUG"):
        parse_log_level("TRACE")


def test_a_public_metrics_address_needs_the_opt_in_and_is_then_warned_about() -> None:
    with pytest.raises(ConfigError, match="not a loopback address.*AETHER_METRICS_ALLOW_PUBLIC=1"):
        Settings.from_env({"AETHER_METRICS_ADDR": "0.0.0.0:9100"})
    with pytest.raises(ConfigError, match="AETHER_METRICS_ALLOW_PUBLIC"):
        Settings.from_env({"AETHER_METRICS_ADDR": "0.0.0.0:9100", "AETHER_METRICS_ALLOW_PUBLIC": "yes"})
    s = Settings.from_env({"AETHER_METRICS_ADDR": "0.0.0.0:9100", "AETHER_METRICS_ALLOW_PUBLIC": "1"})
    assert s.metrics_addr == ("0.0.0.0", 9100)
    assert any("AETHER_METRICS_ALLOW_PUBLIC=1" in w and "0.0.0.0:9100" in w for w in s.warnings)
    for loopback in ("127.0.0.1:1", "localhost:9477", "[::1]:9477", "127.9.9.9:80"):
        assert not Settings.from_env({"AETHER_METRICS_ADDR": loopback}).warnings


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chain.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda t: t.replace("fee_bps = 30", "fee_bsp = 30"), "dex[0]: unknown key 'fee_bsp' (did you mean 'fee_bps'?)"),
        (lambda t: "wetth = 1\n" + t, "unknown key 'wetth' (did you mean 'weth'?)"),
        (lambda t: t.replace("symbol =", "symbl ="), "token[0]: unknown key 'symbl' (did you mean 'symbol'?)"),
        (lambda t: t.replace("decimals = 6", "decimals = 6\nzzz = 1"), "unknown key 'zzz' (known keys: address"),
        # full matches only: no trailing newline (a TOML multi-line string) and no suffix passes
        (lambda t: t.replace('weth = "0x' + "C0" * 20 + '"', 'weth = """0x' + "c0" * 20 + '\n"""'), "weth="),
        (lambda t: t.replace('"0x' + "12" * 32 + '"', '"0x' + "12" * 32 + '\\n"', 1), "init_code_hash="),
        (lambda t: t.replace('"0x' + "aa" * 20 + '"', '"0x' + "aa" * 20 + 'ff"'), "router="),
        # EIP-55: a mixed-case address with a wrong checksum is a typo
        (lambda t: t.replace("C0" * 20, _MIXED[2:].replace("C02", "c02")), "wrong EIP-55 checksum"),
        (lambda t: t.replace("cc" * 20, "aa" * 20), "router 0x" + "aa" * 20 + " appears twice"),
        (lambda t: t.replace("dd" * 20, "bb" * 20), "factory 0x" + "bb" * 20 + " appears twice"),
        (lambda t: t + '\n[[token]]\naddress = "0x' + "EE" * 20 + '"\n', "token 0x" + "ee" * 20 + " appears twice"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = "v4"'), "dex[1].kind='v4'"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nfee_tiers = [500]'), "only a kind = \"v3\" DEX"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = "v3"\nfee_tiers = [501]'), "fee_tiers=[501]"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = "v3"\nfee_tiers = [500, 500]'), "distinct"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = "v3"\nfee_tiers = [true]'), "fee_tiers"),
        (lambda t: t.replace('symbol = "TKN"', 'symbol = "T\\nK"'), "token[0].symbol="),
        # found by tests/faults/test_config_fuzz.py: a list for kind was a TypeError, a float tier passed
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = []'), "dex[1].kind=[]"),
        (lambda t: t.replace('name = "sushi"', 'name = "sushi"\nkind = "v3"\nfee_tiers = [500.0]'), "fee_tiers="),
    ],
)
def test_strict_toml(tmp_path: Path, edit: Callable[[str], str], fragment: str) -> None:
    text = edit(TOML)
    assert text != TOML
    with pytest.raises(ConfigError) as info:
        load_chain_config(_write(tmp_path, text))
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_v3_entries_and_checksummed_addresses_are_accepted(tmp_path: Path) -> None:
    text = TOML.replace("C0" * 20, _MIXED[2:]).replace(
        'name = "sushi"', 'name = "sushi"\nkind = "v3"\nfee_tiers = [500, 3000]'
    ).replace('name = "uniswap"', 'name = "uniswap"\nkind = "v2"')
    chain = load_chain_config(_write(tmp_path, text))
    assert chain.weth == _MIXED.lower()
    assert [(d.kind, d.fee_tiers) for d in chain.dexes] == [(DexKind.V2, ()), (DexKind.V3, (500, 3000))]
    default_tiers = load_chain_config(_write(tmp_path, TOML.replace('name = "sushi"', 'name = "sushi"\nkind = "v3"')))
    assert default_tiers.dexes[1].fee_tiers == (100, 500, 3000, 10000)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("variable", ["AETHER_CONFIG", "AETHER_STATE_FILE"])
def test_a_fifo_or_device_is_refused_without_hanging(tmp_path: Path, variable: str) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # nobody writes it: a plain open() for reading would block forever
    for special in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(ConfigError, match=f"{variable}=.*not a regular file"):
            Settings.from_env({variable: str(special)})


def test_an_oversized_config_file_is_refused(tmp_path: Path) -> None:
    big = _write(tmp_path, TOML + "#" * (1024 * 1024))
    with pytest.raises(ConfigError, match="file too large"):
        load_chain_config(big)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_key_file_that_is_a_fifo_or_device_is_refused_without_hanging(tmp_path: Path) -> None:
    from aether.keys import load_key_file

    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(ConfigError, match="AETHER_SIGNER_KEY_FILE=.*not a regular file"):
            load_key_file(special, "AETHER_SIGNER_KEY_FILE")


@pytest.mark.parametrize(("share", "cap", "ok"), [("9500", "9500", True), ("9501", "9500", False), ("8000", "7999", False),
                                                  ("0", "0", True)])
def test_tip_share_above_the_mempool_tip_cap_is_refused(share: str, cap: str, ok: bool) -> None:
    env = {"AETHER_TIP_SHARE_BPS": share, "AETHER_MEMPOOL_MAX_TIP_BPS": cap}
    if ok:
        assert Settings.from_env(env).tip_share_bps == int(share)
        return
    with pytest.raises(ConfigError) as exc:
        Settings.from_env(env)
    msg = str(exc.value)
    assert "\n" not in msg and f"AETHER_TIP_SHARE_BPS={share}" in msg and f"AETHER_MEMPOOL_MAX_TIP_BPS={cap}" in msg
