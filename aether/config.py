"""Settings: one frozen object built from the environment and an optional TOML file.

Every variable the seed names keeps its name and default. Parsing is strict:
a bad value raises :class:`ConfigError` with one line naming the variable, the
value and what was expected, and ``aether`` exits 2 on it. Money is integer wei;
scientific notation is accepted only when it denotes an integer exactly
(``5e16`` yes, ``1.5e0`` no).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

import attrs

from ._errors import ConfigError
from ._urls import display_url, url_problem

__all__ = [
    "BuilderEndpoint",
    "ChainConfig",
    "DexConfig",
    "RiskLimits",
    "Settings",
    "TokenConfig",
    "load_chain_config",
    "parse_bool01",
    "parse_wei",
]

_WEI_RE = re.compile(r"^[0-9]+(\.[0-9]+)?([eE]\+?[0-9]{1,3})?$")
_ADDR_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_UINT256_MAX = 2**256 - 1

GWEI = 10**9
ETHER = 10**18


# --------------------------------------------------------------------------- values


def parse_wei(name: str, raw: str) -> int:
    """Parse an integer wei amount; exact scientific notation is allowed.

    Raises:
        ConfigError: not a non-negative integer (``-1``, ``1.5e0``, ``0x10``, ``abc``)
            or above 2**256-1.
    """
    text = raw.strip()
    if not _WEI_RE.match(text):
        raise ConfigError(
            f"{name}={raw!r}: expected a non-negative integer amount in wei "
            "(digits, or exact scientific notation such as 5e16)"
        )
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ConfigError(f"{name}={raw!r}: not a number") from exc
    if value != value.to_integral_value():
        raise ConfigError(f"{name}={raw!r}: not a whole number of wei")
    as_int = int(value)
    if as_int > _UINT256_MAX:
        raise ConfigError(f"{name}={raw!r}: above 2**256-1 wei")
    return as_int


def _parse_int(name: str, raw: str, *, lo: int, hi: int | None = None, what: str = "an integer") -> int:
    text = raw.strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise ConfigError(f"{name}={raw!r}: expected {what}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name}={raw!r}: expected {what} in {bound}")
    return value


def parse_bool01(name: str, raw: str) -> bool:
    """Parse a strict ``0``/``1`` switch."""
    text = raw.strip()
    if text == "1":
        return True
    if text == "0":
        return False
    raise ConfigError(f"{name}={raw!r}: expected 0 or 1")


def _parse_shadow(raw: str | None) -> bool:
    # Invariant 1: unset or exactly "1" is shadow; only exactly "0" is live.
    if raw is None or raw == "1":
        return True
    if raw == "0":
        return False
    raise ConfigError(
        f"AETHER_SHADOW={raw!r}: expected 1 (shadow, the default) or 0 (live); "
        "refusing to guess with real money"
    )


def _parse_addr(name: str, raw: object) -> str:
    if not isinstance(raw, str) or not _ADDR_RE.match(raw):
        raise ConfigError(f"{name}={raw!r}: expected a 0x-prefixed 20-byte hex address")
    return raw.lower()


def _parse_hostport(name: str, raw: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}={raw!r}: expected HOST:PORT, for example 127.0.0.1:9477")
    return host.strip("[]"), int(port)


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    text = raw.strip()
    # A host is required: "wss://" or "ws://:8545" would only fail later, at connect time.
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?([^/?#:]+|\[[0-9a-fA-F:.]+\])", text)
    if not any(text.startswith(s + "://") for s in schemes) or m is None:
        raise ConfigError(f"{name}={display_url(raw)!r}: expected a {'/'.join(schemes)} URL with a host")
    problem = url_problem(text)
    if problem is not None:
        raise ConfigError(f"{name}={display_url(raw)!r}: {problem}")
    return text


# --------------------------------------------------------------------------- chain config


@attrs.frozen
class DexConfig:
    """One Uniswap-V2-style DEX: its Router02, factory and pair init-code hash."""

    name: str
    router: str
    factory: str
    init_code_hash: str
    fee_bps: int = 30


@attrs.frozen
class TokenConfig:
    """A token aether may trade against WETH."""

    address: str
    symbol: str
    decimals: int = 18


@attrs.frozen
class ChainConfig:
    """What ``AETHER_CONFIG`` describes: WETH, the DEXes and the tradable tokens.

    ``tokens`` empty means any token seen in a victim path may be tracked.
    """

    weth: str
    dexes: tuple[DexConfig, ...]
    tokens: tuple[TokenConfig, ...] = ()

    def dex_by_router(self) -> dict[str, DexConfig]:
        return {d.router: d for d in self.dexes}


MAINNET = ChainConfig(
    weth="0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
    dexes=(
        DexConfig(
            name="uniswap",
            router="0x7a250d5630b4cf539739df2c5dacb4c659f2488d",
            factory="0x5c69bee701ef814a2b6a3edd4b1652cb9cc5aa6f",
            init_code_hash="0x96e8ac4277198ff8b6f785478aa9a39f403cb768dd02cbee326c3e7da348845f",
        ),
        DexConfig(
            name="sushiswap",
            router="0xd9e1ce17f2641f24ae83637ab66a2cca9c378b9f",
            factory="0xc0aee478e3658e2610c5f7a4a2e1777ce9e4f2ac",
            init_code_hash="0xe18a34eb0e04b04f7a0ac29a6e80748dca96319b42c520bfc2f18dab1b2a0f02",
        ),
    ),
    tokens=(
        TokenConfig("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "USDC", 6),
        TokenConfig("0xdac17f958d2ee523a2206206994597c13d831ec7", "USDT", 6),
        TokenConfig("0x6b175474e89094c44da98b954eedeac495271d0f", "DAI", 18),
        TokenConfig("0x2260fac5e5542a773aa44fbcfedf7c193bc2c599", "WBTC", 8),
    ),
)


def load_chain_config(path: Path) -> ChainConfig:
    """Read an ``AETHER_CONFIG`` TOML file.

    Raises:
        ConfigError: unreadable file, bad TOML, or a missing/ill-typed key; the
            message names the file and the key.
    """
    where = f"AETHER_CONFIG={str(path)!r}"
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the file ({exc.strerror})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from exc
    weth = _parse_addr(f"{where}: weth", data.get("weth"))
    raw_dexes = data.get("dex")
    if not isinstance(raw_dexes, list) or not raw_dexes:
        raise ConfigError(f"{where}: expected at least one [[dex]] table")
    dexes = []
    for i, d in enumerate(raw_dexes):
        key = f"{where}: dex[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{key}: expected a table")
        name = d.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
            raise ConfigError(f"{key}.name={name!r}: expected a short lowercase label")
        ich = d.get("init_code_hash")
        if not isinstance(ich, str) or not _HASH_RE.match(ich):
            raise ConfigError(f"{key}.init_code_hash={ich!r}: expected a 0x-prefixed 32-byte hex hash")
        fee = d.get("fee_bps", 30)
        if not isinstance(fee, int) or isinstance(fee, bool) or not 0 <= fee < 10000:
            raise ConfigError(f"{key}.fee_bps={fee!r}: expected an integer in 0..9999")
        dexes.append(
            DexConfig(
                name=name,
                router=_parse_addr(f"{key}.router", d.get("router")),
                factory=_parse_addr(f"{key}.factory", d.get("factory")),
                init_code_hash=ich.lower(),
                fee_bps=fee,
            )
        )
    if len({d.name for d in dexes}) != len(dexes):
        raise ConfigError(f"{where}: dex names must be unique")
    tokens = []
    raw_tokens = data.get("token", [])
    if not isinstance(raw_tokens, list):
        raise ConfigError(f"{where}: token must be an array of tables ([[token]])")
    for i, t in enumerate(raw_tokens):
        key = f"{where}: token[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{key}: expected a table")
        dec = t.get("decimals", 18)
        if not isinstance(dec, int) or isinstance(dec, bool) or not 0 <= dec <= 36:
            raise ConfigError(f"{key}.decimals={dec!r}: expected an integer in 0..36")
        sym = t.get("symbol", "")
        if not isinstance(sym, str):
            raise ConfigError(f"{key}.symbol={sym!r}: expected a string")
        tokens.append(TokenConfig(_parse_addr(f"{key}.address", t.get("address")), sym, dec))
    return ChainConfig(weth=weth, dexes=tuple(dexes), tokens=tuple(tokens))


# --------------------------------------------------------------------------- settings


@attrs.frozen
class BuilderEndpoint:
    """A block builder: a short label for metrics and logs, and its URL.

    The URL may carry an API key in its path or query; it is never logged
    (``repr`` shows only the label and host).
    """

    name: str
    url: str = attrs.field(repr=False)

    @property
    def display(self) -> str:
        return f"{self.name}({display_url(self.url)})"


def _parse_builders(raw: str) -> tuple[BuilderEndpoint, ...]:
    out: list[BuilderEndpoint] = []
    for i, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        name, sep, url = item.partition("=")
        if not sep or "://" in name:
            name, url = "", item
        url = _parse_url(f"AETHER_BUILDER_URLS[{i}]", url, ("http", "https"))
        if not name:
            m = re.match(r"^https?://(?:[^@/]*@)?([^/:?#]+)", url)
            name = (m.group(1) if m else f"builder{i}").split(".")[0] or f"builder{i}"
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ConfigError(f"AETHER_BUILDER_URLS[{i}]: label {name!r} must be short [A-Za-z0-9_.-]")
        out.append(BuilderEndpoint(name=name, url=url))
    if len({b.name for b in out}) != len(out):
        raise ConfigError("AETHER_BUILDER_URLS: builder labels must be unique (use name=url)")
    return tuple(out)


@attrs.frozen
class RiskLimits:
    """Thresholds of every gate. Defaults are the seed's."""

    max_gas_price_wei: int = 300 * GWEI
    min_balance_wei: int = ETHER // 10
    daily_loss_limit_wei: int = ETHER // 2
    max_reverts: int = 3
    revert_window_s: int = 600
    pause_s: int = 600
    min_profit_wei: int = 10**15
    #: The block-driven source's own floor (``AETHER_BLOCK_ARB_MIN_PROFIT_WEI``):
    #: Stage B raises the mempool minimum, not this one.
    block_arb_min_profit_wei: int = 10**15
    max_tip_bps: int = 9500
    victim_freshness_ms: int = 500
    max_inflight: int = 5


@attrs.frozen
class Settings:
    """Everything ``aether run`` reads from its environment, validated."""

    shadow: bool = True
    mempool_tracking: bool = False
    reports_dir: Path = Path("reports")
    state_file: Path = Path("reports/risk-state.json")
    ws_url: str = "ws://127.0.0.1:8545"
    rpc_url: str = "http://127.0.0.1:8545"
    config_path: Path | None = None
    chain: ChainConfig = MAINNET
    signer_key_file: Path | None = None
    builders: tuple[BuilderEndpoint, ...] = ()
    flashbots_auth_key_file: Path | None = None
    metrics_addr: tuple[str, int] = ("127.0.0.1", 9477)
    risk: RiskLimits = RiskLimits()
    tip_share_bps: int = 8000
    validate: bool = True
    block_arb: bool = True
    rpc_timeout_s: float = 2.0
    builder_timeout_s: float = 2.0
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default ``os.environ``).

        Raises:
            ConfigError: the first bad variable, as one line.
        """
        env = os.environ if env is None else env
        warnings: list[str] = []

        def get(name: str) -> str | None:
            value = env.get(name)
            return None if value is None or value.strip() == "" else value

        def wei(name: str, default: int) -> int:
            raw = get(name)
            return default if raw is None else parse_wei(name, raw)

        def integer(name: str, default: int, *, lo: int, hi: int | None = None, what: str = "an integer") -> int:
            raw = get(name)
            return default if raw is None else _parse_int(name, raw, lo=lo, hi=hi, what=what)

        def switch(name: str, default: bool) -> bool:
            raw = get(name)
            return default if raw is None else parse_bool01(name, raw)

        def path(name: str) -> Path | None:
            raw = get(name)
            return None if raw is None else Path(raw)

        _D = RiskLimits()
        shadow = _parse_shadow(env.get("AETHER_SHADOW"))
        reports_dir = Path(get("AETHER_REPORTS_DIR") or "reports")
        if reports_dir.exists() and not reports_dir.is_dir():
            raise ConfigError(f"AETHER_REPORTS_DIR={str(reports_dir)!r}: exists and is not a directory")
        risk = RiskLimits(
            max_gas_price_wei=wei("AETHER_RISK_MAX_GAS_PRICE_WEI", _D.max_gas_price_wei),
            min_balance_wei=wei("AETHER_RISK_MIN_BALANCE_WEI", _D.min_balance_wei),
            daily_loss_limit_wei=wei("AETHER_RISK_DAILY_LOSS_LIMIT_WEI", _D.daily_loss_limit_wei),
            max_reverts=integer("AETHER_RISK_MAX_REVERTS", 3, lo=1, hi=1000, what="a count"),
            revert_window_s=integer("AETHER_RISK_REVERT_WINDOW_SEC", 600, lo=1, what="seconds"),
            pause_s=integer("AETHER_RISK_PAUSE_SEC", 600, lo=1, what="seconds"),
            min_profit_wei=wei("AETHER_MEMPOOL_MIN_PROFIT_WEI", 10**15),
            block_arb_min_profit_wei=wei("AETHER_BLOCK_ARB_MIN_PROFIT_WEI", _D.block_arb_min_profit_wei),
            max_tip_bps=integer("AETHER_MEMPOOL_MAX_TIP_BPS", 9500, lo=0, hi=10000, what="basis points"),
            victim_freshness_ms=integer(
                "AETHER_MEMPOOL_VICTIM_FRESHNESS_MS", 500, lo=1, hi=3_600_000, what="milliseconds"
            ),
            max_inflight=integer("AETHER_MEMPOOL_MAX_INFLIGHT", 5, lo=1, hi=10_000, what="a count"),
        )
        if risk.daily_loss_limit_wei == 0:
            raise ConfigError("AETHER_RISK_DAILY_LOSS_LIMIT_WEI='0': expected a positive loss limit in wei")
        if risk.max_gas_price_wei == 0:
            raise ConfigError("AETHER_RISK_MAX_GAS_PRICE_WEI='0': expected a positive gas price in wei")

        config_path = path("AETHER_CONFIG")
        chain = MAINNET if config_path is None else load_chain_config(config_path)

        for inline in ("AETHER_SIGNER_KEY", "AETHER_FLASHBOTS_AUTH_KEY", "AETHER_PRIVATE_KEY"):
            if get(inline) is not None:
                warnings.append(
                    f"{inline} is set in the environment and ignored: keys inline in the environment "
                    f"leak into process listings and crash reports; put the key in a file with mode 0600 "
                    f"and set {inline}_FILE" if inline != "AETHER_PRIVATE_KEY" else
                    "AETHER_PRIVATE_KEY is set in the environment and ignored: use AETHER_SIGNER_KEY_FILE"
                )

        builders_raw = get("AETHER_BUILDER_URLS")
        tip_share = integer("AETHER_TIP_SHARE_BPS", 8000, lo=0, hi=10000, what="basis points")
        return cls(
            shadow=shadow,
            mempool_tracking=switch("MEMPOOL_TRACKING", False),
            reports_dir=reports_dir,
            state_file=path("AETHER_STATE_FILE") or reports_dir / "risk-state.json",
            ws_url=_parse_url("AETHER_WS_URL", get("AETHER_WS_URL") or "ws://127.0.0.1:8545", ("ws", "wss")),
            rpc_url=_parse_url("AETHER_RPC_URL", get("AETHER_RPC_URL") or "http://127.0.0.1:8545", ("http", "https")),
            config_path=config_path,
            chain=chain,
            signer_key_file=path("AETHER_SIGNER_KEY_FILE"),
            builders=() if builders_raw is None else _parse_builders(builders_raw),
            # Shadow mode never even looks at the builder auth key (freqtrade's dry-run habit).
            flashbots_auth_key_file=None if shadow else path("AETHER_FLASHBOTS_AUTH_KEY_FILE"),
            metrics_addr=_parse_hostport("AETHER_METRICS_ADDR", get("AETHER_METRICS_ADDR") or "127.0.0.1:9477"),
            risk=risk,
            tip_share_bps=tip_share,
            validate=switch("AETHER_VALIDATE", True),
            block_arb=switch("AETHER_BLOCK_ARB", True),
            rpc_timeout_s=integer("AETHER_RPC_TIMEOUT_MS", 2000, lo=1, hi=600_000, what="milliseconds") / 1000,
            builder_timeout_s=integer("AETHER_BUILDER_TIMEOUT_MS", 2000, lo=1, hi=600_000, what="milliseconds")
            / 1000,
            warnings=tuple(warnings),
        )
