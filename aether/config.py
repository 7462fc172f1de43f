"""Settings: one frozen object built from the environment and an optional TOML file.

Every variable the seed names keeps its name and default. Parsing is strict:
a bad value raises :class:`ConfigError` with one line naming the variable, the
value and what was expected, and ``aether`` exits 2 on it. Money is integer wei;
scientific notation is accepted only when it denotes an integer exactly
(``5e16`` yes, ``1.5e0`` no).
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

import attrs
from eth_utils import to_checksum_address

from . import _files
from ._errors import ConfigError
from ._urls import display_url, url_problem

__all__ = [
    "BuilderEndpoint",
    "ChainConfig",
    "DexConfig",
    "DexKind",
    "ENV_VARIABLES",
    "LOG_LEVELS",
    "V3_FEE_TIERS",
    "RiskLimits",
    "Settings",
    "TokenConfig",
    "load_chain_config",
    "parse_bool01",
    "parse_log_level",
    "parse_wei",
    "read_regular_file",
]

_WEI_RE = re.compile(r"[0-9]+(\.[0-9]+)?([eE]\+?[0-9]{1,3})?")
_ADDR_RE = re.compile(r"0x[0-9a-fA-F]{40}")
_HASH_RE = re.compile(r"0x[0-9a-fA-F]{64}")
_UINT256_MAX = 2**256 - 1

#: Longest value any variable may hold: longer is a paste accident, not a setting.
MAX_VALUE_CHARS = 8192
#: Longest digit string of a wei amount (2**256-1 has 78 digits; room for "5.0e16" forms).
_MAX_WEI_CHARS = 100
#: Longest digit string of any other integer variable (every bound below has fewer digits).
_MAX_INT_CHARS = 12
#: Path limits of common filesystems (PATH_MAX, NAME_MAX), in bytes.
_MAX_PATH_BYTES = 4096
_MAX_NAME_BYTES = 255
#: Largest file aether reads as configuration (TOML, risk state); key files have their own.
MAX_CONFIG_FILE_BYTES = 1024 * 1024

_MAX_SECONDS = 30 * 86_400

#: Every variable ``aether run`` reads (the fuzz suite feeds each of them hostile values).
ENV_VARIABLES: tuple[str, ...] = (
    "AETHER_SHADOW", "MEMPOOL_TRACKING", "AETHER_REPORTS_DIR", "AETHER_STATE_FILE", "AETHER_LOG_LEVEL",
    "AETHER_MEMPOOL_MIN_PROFIT_WEI", "AETHER_MEMPOOL_MAX_TIP_BPS", "AETHER_MEMPOOL_VICTIM_FRESHNESS_MS",
    "AETHER_MEMPOOL_MAX_INFLIGHT", "AETHER_TIP_SHARE_BPS", "AETHER_WS_URL", "AETHER_RPC_URL", "AETHER_CONFIG",
    "AETHER_SIGNER_KEY_FILE", "AETHER_BUILDER_URLS", "AETHER_FLASHBOTS_AUTH_KEY_FILE", "AETHER_METRICS_ADDR",
    "AETHER_METRICS_ALLOW_PUBLIC", "AETHER_RISK_MAX_GAS_PRICE_WEI", "AETHER_RISK_MIN_BALANCE_WEI",
    "AETHER_RISK_DAILY_LOSS_LIMIT_WEI", "AETHER_RISK_MAX_REVERTS", "AETHER_RISK_REVERT_WINDOW_SEC",
    "AETHER_RISK_PAUSE_SEC", "AETHER_VALIDATE", "AETHER_BLOCK_ARB", "AETHER_RPC_TIMEOUT_MS",
    "AETHER_BUILDER_TIMEOUT_MS", "AETHER_RPC_MAX_RESPONSE_BYTES", "AETHER_NODE_SILENCE_GRACE_SEC",
    "AETHER_BLOCK_ARB_MIN_PROFIT_WEI",
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
V3_FEE_TIERS = (100, 500, 3000, 10000)

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
    if len(text) > _MAX_WEI_CHARS or not _WEI_RE.fullmatch(text):
        raise ConfigError(
            f"{name}={_shown(raw)}: expected a non-negative integer amount in wei "
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


def _shown(raw: str, limit: int = 60) -> str:
    """``raw`` as a message may quote it: repr (no raw newline reaches a log), cut short."""
    return repr(raw) if len(raw) <= limit else repr(raw[:limit]) + f"... ({len(raw)} characters)"


def _parse_int(name: str, raw: str, *, lo: int, hi: int, what: str = "an integer") -> int:
    """A bounded integer in ASCII digits: ``\u0663`` or a 5000-digit string is an error, not a traceback."""
    text = raw.strip()
    if len(text) > _MAX_INT_CHARS or not re.fullmatch(r"[0-9]+", text):
        raise ConfigError(f"{name}={_shown(raw)}: expected {what} in {lo}..{hi} (ASCII digits)")
    value = int(text)
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={_shown(raw)}: expected {what} in {lo}..{hi}")
    return value


def _val(value: object) -> str:
    """A TOML value as a message may quote it (strings via :func:`_shown`, others by repr, cut short)."""
    if isinstance(value, str):
        return _shown(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def parse_log_level(raw: str | None) -> str:
    """``AETHER_LOG_LEVEL``: one of :data:`LOG_LEVELS`, any case; unset means INFO."""
    if raw is None or raw.strip() == "":
        return "INFO"
    level = raw.strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"AETHER_LOG_LEVEL={_shown(raw)}: expected one of {', '.join(LOG_LEVELS)}")
    return level


def _parse_path(name: str, raw: str) -> Path:
    """A path variable: no NUL, within PATH_MAX/NAME_MAX, encodable for the filesystem."""
    try:
        encoded = os.fsencode(raw)
    except UnicodeError:
        raise ConfigError(f"{name}={_shown(raw)}: not encodable as a file name") from None
    if b"\0" in encoded:
        raise ConfigError(f"{name}={_shown(raw)}: a path cannot hold a NUL character")
    if len(encoded) > _MAX_PATH_BYTES or any(len(part) > _MAX_NAME_BYTES for part in encoded.split(b"/")):
        raise ConfigError(f"{name}={_shown(raw)}: path too long ({_MAX_PATH_BYTES} bytes in all, "
                          f"{_MAX_NAME_BYTES} per name)")
    return Path(raw)


def read_regular_file(path: Path, name: str, *, max_bytes: int = MAX_CONFIG_FILE_BYTES) -> bytes:
    """Read a whole configuration file, refusing anything that is not a bounded regular file.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` on the open
    descriptor before any read, so a FIFO, a device or a directory is an error
    instead of a hang (and the check cannot be raced by swapping the path), and at
    most ``max_bytes + 1`` bytes are ever read.

    Raises:
        ConfigError: missing, not a regular file, larger than ``max_bytes``, unreadable.
    """
    where = f"{name}={_shown(str(path), 200)}"
    try:
        data, _ = _files.read_regular_file(path, max_bytes)
    except _files.FileReadError as exc:
        raise ConfigError(f"{where}: {_config_file_message(exc)}") from None
    return data


def _config_file_message(exc: _files.FileReadError) -> str:
    kind = exc.kind
    if kind is _files.ReadFailure.MISSING:
        return "cannot read the file (it does not exist)"
    if kind is _files.ReadFailure.NOT_REGULAR:
        return "not a regular file"
    if kind is _files.ReadFailure.TOO_LARGE:
        return f"file too large ({exc.size} bytes, at most {exc.cap})"
    if kind is _files.ReadFailure.GREW:  # it grew after the fstat
        return f"file too large (at most {exc.cap} bytes)"
    if kind is _files.ReadFailure.READ:
        return f"cannot read the file ({exc.reason})"
    return f"cannot open the file ({exc.reason})"


def check_regular_file_if_present(path: Path, name: str, *, max_bytes: int = MAX_CONFIG_FILE_BYTES) -> None:
    """For a file read later by someone else (the risk state): if it exists, it must be a
    bounded regular file. ``os.stat`` never blocks on a FIFO, so this cannot hang.
    """
    where = f"{name}={_shown(str(path), 200)}"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot stat the file ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: not a regular file")
    if st.st_size > max_bytes:
        raise ConfigError(f"{where}: file too large ({st.st_size} bytes, at most {max_bytes})")


def parse_bool01(name: str, raw: str) -> bool:
    """Parse a strict ``0``/``1`` switch."""
    text = raw.strip()
    if text == "1":
        return True
    if text == "0":
        return False
    raise ConfigError(f"{name}={_shown(raw)}: expected 0 or 1")


def _parse_shadow(raw: str | None) -> bool:
    # Invariant 1: unset or exactly "1" is shadow; only exactly "0" is live.
    if raw is None or raw == "1":
        return True
    if raw == "0":
        return False
    raise ConfigError(
        f"AETHER_SHADOW={_shown(raw)}: expected 1 (shadow, the default) or 0 (live); "
        "refusing to guess with real money"
    )


def _parse_addr(name: str, raw: object) -> str:
    """A 20-byte address matched in full; a mixed-case spelling must be a valid EIP-55 checksum.

    A checksum exists to catch a mistyped character; accepting a wrong one would
    throw that protection away (all-lower or all-upper spellings carry none).
    """
    if not isinstance(raw, str) or not _ADDR_RE.fullmatch(raw):
        raise ConfigError(f"{name}={_val(raw)}: expected a 0x-prefixed 20-byte hex address")
    digits = raw[2:]
    if digits != digits.lower() and digits != digits.upper() and to_checksum_address(raw) != raw:
        raise ConfigError(f"{name}={raw!r}: mixed-case address with a wrong EIP-55 checksum (a typo?); "
                          "write it all lowercase or with its correct checksum")
    return raw.lower()


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_hostport(name: str, raw: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    host = host.strip("[]") if host.startswith("[") and host.endswith("]") else host
    if (not sep or not re.fullmatch(r"[A-Za-z0-9._:-]{1,253}", host) or not re.fullmatch(r"[0-9]{1,5}", port)
            or int(port) > 65535):
        raise ConfigError(f"{name}={_shown(raw)}: expected HOST:PORT with PORT in 0..65535, "
                          "for example 127.0.0.1:9477")
    return host, int(port)


def _parse_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    text = raw.strip()
    if len(text) > 2048:
        raise ConfigError(f"{name}={display_url(raw)!r}: URL longer than 2048 characters")
    # A host is required: "wss://" or "ws://:8545" would only fail later, at connect time.
    m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^@/?#]*@)?([^/?#:]+|\[[0-9a-fA-F:.]+\])", text)
    if not any(text.startswith(s + "://") for s in schemes) or m is None:
        raise ConfigError(f"{name}={display_url(raw)!r}: expected a {'/'.join(schemes)} URL with a host")
    problem = url_problem(text)
    if problem is not None:
        raise ConfigError(f"{name}={display_url(raw)!r}: {problem}")
    return text


# --------------------------------------------------------------------------- chain config


class DexKind(enum.StrEnum):
    """Which Uniswap generation a ``[[dex]]`` entry is (the TOML ``kind`` key)."""

    V2 = "v2"
    V3 = "v3"


@attrs.frozen
class DexConfig:
    """One Uniswap-style DEX: its router, factory and pool init-code hash.

    ``kind`` and ``fee_tiers`` describe a V3 deployment (``fee_tiers`` is empty for V2,
    whose fee is ``fee_bps``).
    """

    name: str
    router: str
    factory: str
    init_code_hash: str
    fee_bps: int = 30
    kind: DexKind = DexKind.V2
    fee_tiers: tuple[int, ...] = ()


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


_TOP_KEYS = ("weth", "dex", "token")
_DEX_KEYS = ("name", "router", "factory", "init_code_hash", "fee_bps", "kind", "fee_tiers")
_TOKEN_KEYS = ("address", "symbol", "decimals")


def _check_keys(where: str, table: Mapping[str, object], known: Iterable[str]) -> None:
    """Refuse a key aether does not know: a typo (``fee_bsp``) must not silently mean the default."""
    known = tuple(known)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"
            raise ConfigError(f"{where}: unknown key {_val(key)}{hint}")


def _refuse_duplicates(where: str, what: str, values: Iterable[str]) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{where}: {what} {v} appears twice")
        seen.add(v)


def load_chain_config(path: Path) -> ChainConfig:
    """Read an ``AETHER_CONFIG`` TOML file.

    Strict on purpose: tools outside the project write this file, and a typo that
    silently falls back to a default (a misspelt ``fee_bps``) or an address with one
    wrong character would make aether trade against the wrong contract.

    Raises:
        ConfigError: unreadable or special file, bad TOML, an unknown key, or a
            missing/ill-typed value; the message names the file and the key.
    """
    where = f"AETHER_CONFIG={_shown(str(path), 200)}"
    raw = read_regular_file(path, "AETHER_CONFIG")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({str(exc).splitlines()[0] if str(exc) else 'parse error'})") from exc
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML (nested too deeply)") from None
    _check_keys(where, data, _TOP_KEYS)
    weth = _parse_addr(f"{where}: weth", data.get("weth"))
    raw_dexes = data.get("dex")
    if not isinstance(raw_dexes, list) or not raw_dexes:
        raise ConfigError(f"{where}: expected at least one [[dex]] table")
    dexes = []
    for i, d in enumerate(raw_dexes):
        key = f"{where}: dex[{i}]"
        if not isinstance(d, dict):
            raise ConfigError(f"{key}: expected a table")
        _check_keys(key, d, _DEX_KEYS)
        name = d.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
            raise ConfigError(f"{key}.name={_val(name)}: expected a short lowercase label ([a-z0-9_-], 1..32)")
        ich = d.get("init_code_hash")
        if not isinstance(ich, str) or not _HASH_RE.fullmatch(ich):
            raise ConfigError(f"{key}.init_code_hash={_val(ich)}: expected a 0x-prefixed 32-byte hex hash")
        fee = d.get("fee_bps", 30)
        if not isinstance(fee, int) or isinstance(fee, bool) or not 0 <= fee < 10000:
            raise ConfigError(f"{key}.fee_bps={_val(fee)}: expected an integer in 0..9999")
        kind_raw = d.get("kind", DexKind.V2.value)
        if not isinstance(kind_raw, str) or kind_raw not in {k.value for k in DexKind}:
            raise ConfigError(f"{key}.kind={_val(kind_raw)}: expected one of "
                              f"{', '.join(repr(k.value) for k in DexKind)}")
        kind = DexKind(kind_raw)
        tiers_raw = d.get("fee_tiers")
        tiers: tuple[int, ...] = ()
        if kind is DexKind.V3:
            tiers_raw = list(V3_FEE_TIERS) if tiers_raw is None else tiers_raw
            if (not isinstance(tiers_raw, list) or not tiers_raw
                    or any(type(t) is not int or t not in V3_FEE_TIERS for t in tiers_raw)
                    or len(set(tiers_raw)) != len(tiers_raw)):
                raise ConfigError(f"{key}.fee_tiers={_val(tiers_raw)}: expected a non-empty list of "
                                  f"distinct fee tiers from {list(V3_FEE_TIERS)}")
            tiers = tuple(int(t) for t in tiers_raw)
        elif tiers_raw is not None:
            raise ConfigError(f"{key}.fee_tiers: only a kind = \"v3\" DEX has fee tiers (a v2 DEX has fee_bps)")
        dexes.append(
            DexConfig(
                name=name,
                router=_parse_addr(f"{key}.router", d.get("router")),
                factory=_parse_addr(f"{key}.factory", d.get("factory")),
                init_code_hash=ich.lower(),
                fee_bps=fee,
                kind=kind,
                fee_tiers=tiers,
            )
        )
    if len({d.name for d in dexes}) != len(dexes):
        raise ConfigError(f"{where}: dex names must be unique")
    # Two DEXes on one router would make a victim's pool ambiguous; one factory twice
    # would count the same pools twice as a price gap.
    _refuse_duplicates(where, "router", (d.router for d in dexes))
    _refuse_duplicates(where, "factory", (d.factory for d in dexes))
    tokens = []
    raw_tokens = data.get("token", [])
    if not isinstance(raw_tokens, list):
        raise ConfigError(f"{where}: token must be an array of tables ([[token]])")
    for i, t in enumerate(raw_tokens):
        key = f"{where}: token[{i}]"
        if not isinstance(t, dict):
            raise ConfigError(f"{key}: expected a table")
        _check_keys(key, t, _TOKEN_KEYS)
        dec = t.get("decimals", 18)
        if not isinstance(dec, int) or isinstance(dec, bool) or not 0 <= dec <= 36:
            raise ConfigError(f"{key}.decimals={_val(dec)}: expected an integer in 0..36")
        sym = t.get("symbol", "")
        if not isinstance(sym, str) or not re.fullmatch(r"[\x21-\x7e]{0,32}", sym):
            raise ConfigError(f"{key}.symbol={_val(sym)}: expected up to 32 printable ASCII characters")
        tokens.append(TokenConfig(_parse_addr(f"{key}.address", t.get("address")), sym, dec))
    _refuse_duplicates(where, "token", (t.address for t in tokens))
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
            # The label is shown everywhere: take it from the displayed host, never from the
            # raw text (whose userinfo may hold a password with an unencoded "/" or "?").
            host = display_url(url).partition("://")[2]
            name = f"builder{i}" if host.startswith("<") else (host.split(".")[0].split(":")[0] or f"builder{i}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", name):
            raise ConfigError(f"AETHER_BUILDER_URLS[{i}]: label {_shown(name)} must be short [A-Za-z0-9_.-]")
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
    rpc_max_response_bytes: int = 16 * 1024 * 1024
    node_silence_grace_s: float = 60.0
    log_level: str = "INFO"
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
            if value is not None and len(value) > MAX_VALUE_CHARS:
                raise ConfigError(f"{name}: value of {len(value)} characters (at most {MAX_VALUE_CHARS})")
            return None if value is None or value.strip() == "" else value

        def wei(name: str, default: int) -> int:
            raw = get(name)
            return default if raw is None else parse_wei(name, raw)

        def integer(name: str, default: int, *, lo: int, hi: int, what: str = "an integer") -> int:
            raw = get(name)
            return default if raw is None else _parse_int(name, raw, lo=lo, hi=hi, what=what)

        def switch(name: str, default: bool) -> bool:
            raw = get(name)
            return default if raw is None else parse_bool01(name, raw)

        def path(name: str) -> Path | None:
            raw = get(name)
            return None if raw is None else _parse_path(name, raw)

        _D = RiskLimits()
        log_level = parse_log_level(get("AETHER_LOG_LEVEL"))
        shadow = _parse_shadow(env.get("AETHER_SHADOW"))
        reports_dir = path("AETHER_REPORTS_DIR") or Path("reports")
        try:
            st_mode = os.stat(reports_dir).st_mode
        except FileNotFoundError:
            st_mode = None
        except OSError as exc:
            raise ConfigError(f"AETHER_REPORTS_DIR={_shown(str(reports_dir), 200)}: not writable "
                              f"({exc.strerror})") from None
        if st_mode is not None and not stat.S_ISDIR(st_mode):
            raise ConfigError(f"AETHER_REPORTS_DIR={_shown(str(reports_dir), 200)}: exists and is not a directory")
        risk = RiskLimits(
            max_gas_price_wei=wei("AETHER_RISK_MAX_GAS_PRICE_WEI", _D.max_gas_price_wei),
            min_balance_wei=wei("AETHER_RISK_MIN_BALANCE_WEI", _D.min_balance_wei),
            daily_loss_limit_wei=wei("AETHER_RISK_DAILY_LOSS_LIMIT_WEI", _D.daily_loss_limit_wei),
            max_reverts=integer("AETHER_RISK_MAX_REVERTS", 3, lo=1, hi=1000, what="a count"),
            # At most 30 days: longer is a typo, and a huge pause would overflow the clock arithmetic.
            revert_window_s=integer("AETHER_RISK_REVERT_WINDOW_SEC", 600, lo=1, hi=_MAX_SECONDS, what="seconds"),
            pause_s=integer("AETHER_RISK_PAUSE_SEC", 600, lo=1, hi=_MAX_SECONDS, what="seconds"),
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
        state_file = path("AETHER_STATE_FILE") or reports_dir / "risk-state.json"
        # The risk store reads it later; a FIFO or a device there must fail now, not hang then.
        check_regular_file_if_present(state_file, "AETHER_STATE_FILE")
        metrics_addr = _parse_hostport("AETHER_METRICS_ADDR", get("AETHER_METRICS_ADDR") or "127.0.0.1:9477")
        if not _is_loopback(metrics_addr[0]):
            if not switch("AETHER_METRICS_ALLOW_PUBLIC", False):
                raise ConfigError(
                    f"AETHER_METRICS_ADDR={_shown(get('AETHER_METRICS_ADDR') or '')}: not a loopback address; the "
                    "metrics show the searcher address, balances and risk state to anyone who can reach them. "
                    "Set AETHER_METRICS_ALLOW_PUBLIC=1 to expose them on purpose"
                )
            warnings.append(
                f"AETHER_METRICS_ALLOW_PUBLIC=1: metrics are served on {metrics_addr[0]}:{metrics_addr[1]}, "
                "beyond this host; make sure a firewall limits who can read them"
            )

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
        if tip_share > risk.max_tip_bps:
            # The tip_share gate would refuse nearly every mempool bundle while block-driven
            # bundles (which that gate does not judge) still bid the whole share: a typo, not a policy.
            raise ConfigError(f"AETHER_TIP_SHARE_BPS={tip_share}: above AETHER_MEMPOOL_MAX_TIP_BPS="
                              f"{risk.max_tip_bps}; the bid must not exceed the cap the risk gate enforces")
        return cls(
            shadow=shadow,
            mempool_tracking=switch("MEMPOOL_TRACKING", False),
            reports_dir=reports_dir,
            state_file=state_file,
            ws_url=_parse_url("AETHER_WS_URL", get("AETHER_WS_URL") or "ws://127.0.0.1:8545", ("ws", "wss")),
            rpc_url=_parse_url("AETHER_RPC_URL", get("AETHER_RPC_URL") or "http://127.0.0.1:8545", ("http", "https")),
            config_path=config_path,
            chain=chain,
            signer_key_file=path("AETHER_SIGNER_KEY_FILE"),
            builders=() if builders_raw is None else _parse_builders(builders_raw),
            # Shadow mode never even looks at the builder auth key (freqtrade's dry-run habit).
            flashbots_auth_key_file=None if shadow else path("AETHER_FLASHBOTS_AUTH_KEY_FILE"),
            metrics_addr=metrics_addr,
            risk=risk,
            tip_share_bps=tip_share,
            validate=switch("AETHER_VALIDATE", True),
            block_arb=switch("AETHER_BLOCK_ARB", True),
            rpc_timeout_s=integer("AETHER_RPC_TIMEOUT_MS", 2000, lo=1, hi=600_000, what="milliseconds") / 1000,
            builder_timeout_s=integer("AETHER_BUILDER_TIMEOUT_MS", 2000, lo=1, hi=600_000, what="milliseconds")
            / 1000,
            rpc_max_response_bytes=integer("AETHER_RPC_MAX_RESPONSE_BYTES", 16 * 1024 * 1024, lo=64 * 1024,
                                           hi=1024 * 1024 * 1024, what="bytes"),
            node_silence_grace_s=float(integer("AETHER_NODE_SILENCE_GRACE_SEC", 60, lo=2, hi=86_400,
                                               what="seconds")),
            log_level=log_level,
            warnings=tuple(warnings),
        )
