"""Reading run directories as evidence: strictly, boundedly, and each run once.

A sign-off is only as honest as what it reads, so this loader assumes the
directory may be hostile (a shell glob, a backup copy, a hand-edited file):

- **Files.** Every file is opened without following a symlink and without
  blocking (a FIFO never hangs the reader), must be a regular file no larger
  than its cap, UTF-8, and JSON of the expected shape. Anything else is a
  :class:`Problem` naming the file; one problem makes the whole command exit 2
  (never a pass, never a traceback).
- **Amounts** are JSON integers or exact decimal strings (``"-12"``), never
  floats, booleans or ``"1e3"``: money is integer wei.
- **Each run once.** Directories are compared by real path (every spelling of
  one directory, symlinks included, counts once); a directory inside another
  one given is refused; two directories with the same run identity (``run_id``
  in ``run.json``, or the digest of ``run.json`` for older runs) are one run
  when their files are identical (a backup copy: counted once) and refused when
  they differ. arb_ids repeated across runs are counted once. Every such
  decision is a :class:`Note` shown in the output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from .. import _files
from ..messages import SOURCES

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLES",
    "MAX_INCLUSIONS_BYTES",
    "MAX_META_BYTES",
    "Bundle",
    "Inclusion",
    "LoadResult",
    "Note",
    "Problem",
    "RunData",
    "RunDirError",
    "load_run",
    "load_runs",
    "parse_amount",
]

#: Caps: a run directory is evidence, not a stream; anything larger is refused.
MAX_META_BYTES = 1 << 20  # run.json, summary.json, a risk state file
MAX_BUNDLE_BYTES = 1 << 20  # one dump (a few KiB in practice)
MAX_INCLUSIONS_BYTES = 64 << 20  # inclusions.jsonl (~500 bytes a line)
MAX_BUNDLES = 1_000_000  # dumps per run directory
MAX_ID_LEN = 256

_DECIMAL = re.compile(r"-?[0-9]{1,80}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]")
MAX_DEPTH = 64  # nesting levels; aether's files use at most 4
_READ_LIMITS = ("min_profit_wei", "daily_loss_limit_wei")


class RunDirError(Exception):
    """Run directories that cannot be evidence: one line per problem in ``problems``."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@attrs.frozen
class Problem:
    """One reason a file or directory cannot be read as evidence (exit 2)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@attrs.frozen
class Note:
    """A decision the loader took about what to count (shown in the output)."""

    text: str


class _Bad(Exception):
    """A field of a document has the wrong type or value (becomes a Problem)."""


def parse_amount(value: object, what: str) -> int:
    """An amount in wei: a JSON integer or an exact decimal string; nothing else.

    Raises:
        _Bad: a float, a boolean, ``"1e3"``, ``" 1"``, an over-long string, or anything else.
    """
    if type(value) is int:
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    raise _Bad(f"{what}: {value!r:.60} is not an integer amount (an integer or a decimal string)")


def _int(doc: dict[str, Any], key: str, what: str, *, minimum: int | None = 0, required: bool = True,
         maximum: int = 2**63 - 1) -> int | None:
    v = doc.get(key)
    if v is None and not required:
        return None
    if type(v) is not int or (minimum is not None and v < minimum) or v > maximum:
        raise _Bad(f"{what}.{key}: {v!r:.60} is not an integer{'' if minimum is None else f' >= {minimum}'}"
                   f" and <= {maximum}")
    return v


#: Times outside these years are not a run's (and would overflow date arithmetic).
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.UTC)


def _sane(t: dt.datetime, text: object, what: str) -> dt.datetime:
    if not EARLIEST <= t < LATEST:
        raise _Bad(f"{what}: {text!r:.60} is outside the years {EARLIEST.year} to {LATEST.year - 1}")
    return t


def _unix(doc: dict[str, Any], key: str, what: str) -> int | None:
    return _int(doc, key, what, required=False, minimum=int(EARLIEST.timestamp()), maximum=int(LATEST.timestamp()) - 1)


def _str(doc: dict[str, Any], key: str, what: str, *, required: bool = True, max_len: int = MAX_ID_LEN) -> str | None:
    v = doc.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v or len(v) > max_len:
        raise _Bad(f"{what}.{key}: {v!r:.60} is not a non-empty string of at most {max_len} characters")
    return v


def _bool(doc: dict[str, Any], key: str, what: str, *, required: bool = True) -> bool | None:
    v = doc.get(key)
    if v is None and not required:
        return None
    if type(v) is not bool:
        raise _Bad(f"{what}.{key}: {v!r:.60} is not true or false")
    return v


def _obj(v: object, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad(f"{what}: expected a JSON object, got {type(v).__name__}")
    return v


def parse_time(text: object, what: str) -> dt.datetime:
    """An ISO-8601 instant with its offset (``Z`` accepted), as an aware UTC datetime."""
    if not isinstance(text, str) or len(text) > 64:
        raise _Bad(f"{what}: {text!r:.60} is not an ISO-8601 time")
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Bad(f"{what}: {text!r:.60} is not an ISO-8601 time") from None
    if t.tzinfo is None:
        raise _Bad(f"{what}: {text!r:.60} has no UTC offset")
    try:
        return _sane(t.astimezone(dt.UTC), text, what)
    except OverflowError:
        raise _Bad(f"{what}: {text!r:.60} is outside the years {EARLIEST.year} to {LATEST.year - 1}") from None


def _stamp_time(text: object, what: str) -> dt.datetime:
    """``run.json``'s ``started_at``: the run directory stamp ``20261124T205012Z``."""
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{8}T[0-9]{6}Z", text):
        raise _Bad(f"{what}: {text!r:.60} is not a UTC stamp like 20261124T205012Z")
    try:
        return _sane(dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC), text, what)
    except ValueError:
        raise _Bad(f"{what}: {text!r:.60} is not a valid UTC stamp") from None


# --------------------------------------------------------------------------- files


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path, cap: int, *, follow: bool = False) -> bytes:
    """The bytes of a regular file of at most ``cap`` bytes, never following a symlink.

    ``O_NONBLOCK`` makes opening a FIFO return at once (then ``fstat`` refuses it);
    ``O_NOFOLLOW`` refuses a symlink (aether never writes one in a run directory, and
    one pointing at another run's dump or at ``/dev/zero`` is an alias or a trap).

    Raises:
        _Bad: not a regular file, too large, or unreadable (the reason, not the path).
    """
    try:
        data, _ = _files.read_regular_file(path, cap, follow=follow)
    except _files.FileReadError as exc:
        raise _Bad(_run_file_message(exc)) from None
    return data


def _run_file_message(exc: _files.FileReadError) -> str:
    kind = exc.kind
    if kind is _files.ReadFailure.SYMLINK:
        return "is a symlink (aether never writes one into a run directory)"
    if kind is _files.ReadFailure.NOT_REGULAR:
        return f"is {_kind(exc.mode)}, not a regular file"
    if kind is _files.ReadFailure.TOO_LARGE:
        return f"is {exc.size} bytes, over the cap of {exc.cap}"
    if kind is _files.ReadFailure.GREW:
        return f"grew over the cap of {exc.cap} bytes while being read"
    if kind is _files.ReadFailure.READ:
        return f"cannot read it ({exc.reason})"
    return f"cannot open it ({exc.reason})"


def _no_constant(name: str) -> object:
    raise _Bad(f"holds {name}, which is not JSON")


def parse_json(data: bytes) -> Any:
    """Strict JSON from UTF-8 bytes (no NaN/Infinity; floats stay floats, amounts refuse them)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"not UTF-8 (byte {exc.start})") from None
    # The C scanner recurses per level: a megabyte of "[" can overflow the C stack
    # before Python's recursion limit is checked, so the depth is measured first.
    # (Fewer openers than the limit cannot nest past it: the usual case, no scan.)
    openers = text.count("[") + text.count("{")
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)) if openers > MAX_DEPTH else ""
    depth = deepest = 0
    for ch in brackets:
        depth += 1 if ch in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                raise _Bad(f"not JSON this reader accepts (nested too deeply, over {MAX_DEPTH} levels)")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _Bad(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (RecursionError, ValueError) as exc:  # ValueError: e.g. an integer of over 4300 digits
        raise _Bad(f"not JSON this reader accepts ({type(exc).__name__})") from None


def read_json(path: Path, cap: int, *, follow: bool = False) -> Any:
    return parse_json(read_bytes(path, cap, follow=follow))


# --------------------------------------------------------------------------- documents


@attrs.frozen
class Decision:
    gate: str
    passed: bool
    value: str


@attrs.frozen
class Bundle:
    """The parts of one dump the report and the checks read (amounts int wei)."""

    file: str
    arb_id: str
    source: str
    target_block: int
    built_at: dt.datetime
    gross_wei: int
    net_wei: int
    decisions: tuple[Decision, ...]
    rejected_reason: str | None
    outcome: str | None
    mode: str | None
    victim_age_ms: int | None
    #: sha256 of the signed transactions: the same bundle under another ``arb_id`` is the same bundle.
    envelope_digest: str = ""

    @classmethod
    def from_doc(cls, doc: object, file: str) -> Bundle:
        d = _obj(doc, "dump")
        for key in ("envelope", "tip_share_bps", "gas_used"):
            if key not in d:
                raise _Bad(f"missing field {key}")
        source = _str(d, "source", "dump")
        if source not in SOURCES:
            raise _Bad(f"dump.source: {source!r:.60} is not one of {', '.join(SOURCES)}")
        env = d["envelope"]
        if not isinstance(env, list) or not env or not all(isinstance(t, str) and t.startswith("0x") for t in env):
            raise _Bad("dump.envelope: expected a non-empty list of 0x-hex strings")
        tip = _int(d, "tip_share_bps", "dump")
        if tip is not None and tip > 10000:
            raise _Bad(f"dump.tip_share_bps: {tip} is over 10000")
        _int(d, "gas_used", "dump")
        for key in ("base_fee_wei", "priority_fee_wei", "flashloan_amount"):
            if d.get(key) is not None:
                parse_amount(d[key], f"dump.{key}")
        raw = d.get("risk_decisions")
        if not isinstance(raw, list):
            raise _Bad("dump.risk_decisions: expected a list")
        decisions = []
        for i, r in enumerate(raw):
            r = _obj(r, f"dump.risk_decisions[{i}]")
            value = r.get("value")
            if not isinstance(value, str | int) or isinstance(value, bool):
                raise _Bad(f"dump.risk_decisions[{i}].value: expected a string")
            decisions.append(Decision(_str(r, "gate", f"dump.risk_decisions[{i}]", max_len=64) or "",
                                      bool(_bool(r, "passed", f"dump.risk_decisions[{i}]")), str(value)))
        return cls(
            file=file,
            arb_id=_str(d, "arb_id", "dump") or "",
            source=source,
            target_block=_int(d, "target_block", "dump") or 0,
            built_at=parse_time(d.get("built_at"), "dump.built_at"),
            gross_wei=parse_amount(d.get("expected_gross_profit_wei"), "dump.expected_gross_profit_wei"),
            net_wei=parse_amount(d.get("expected_net_profit_wei"), "dump.expected_net_profit_wei"),
            decisions=tuple(decisions),
            rejected_reason=_str(d, "rejected_reason", "dump", required=False, max_len=64),
            outcome=_str(d, "outcome", "dump", required=False, max_len=64),
            mode=_str(d, "mode", "dump", required=False, max_len=16),
            victim_age_ms=_int(d, "victim_age_ms_at_gate", "dump", required=False),
            envelope_digest=hashlib.sha256("\n".join(env).lower().encode()).hexdigest(),
        )

    def failing_gates(self) -> tuple[str, ...]:
        """Every gate whose decision failed (not only the first, which ``rejected_reason`` names)."""
        return tuple(dict.fromkeys(d.gate for d in self.decisions if not d.passed))


@attrs.frozen
class Inclusion:
    """One ``inclusions.jsonl`` line: a submitted bundle's fate (amounts int wei)."""

    line: str
    arb_id: str
    included: bool
    reverted: bool
    predicted_wei: int
    realised_wei: int
    unknown: bool = False  # the node never let the tracker judge it: neither included nor missed

    @classmethod
    def from_doc(cls, doc: object, line: str) -> Inclusion:
        d = _obj(doc, "line")
        unknown = bool(_bool(d, "unknown", "line", required=False))
        return cls(
            line=line,
            arb_id=_str(d, "arb_id", "line") or "",
            unknown=unknown,
            included=bool(_bool(d, "included", "line")) and not unknown,
            reverted=bool(_bool(d, "reverted", "line", required=False)),
            predicted_wei=parse_amount(d.get("predicted_profit_wei"), "line.predicted_profit_wei"),
            realised_wei=parse_amount(d.get("realised_profit_wei"), "line.realised_profit_wei"),
        )


@attrs.frozen
class RiskRecord:
    """``summary.json``'s ``risk``: HALT latches seen during the run and the saved risk state."""

    halts_seen: tuple[str, ...]
    state_halts: tuple[tuple[str, str], ...]
    state_day: str | None
    state_pnl_wei: int | None

    @classmethod
    def from_doc(cls, doc: object) -> RiskRecord:
        d = _obj(doc, "summary.risk")
        seen = d.get("halts_seen")
        if not isinstance(seen, list) or not all(isinstance(g, str) and len(g) <= 64 for g in seen):
            raise _Bad("summary.risk.halts_seen: expected a list of gate names")
        halts, day, pnl = state_facts(d.get("state"), "summary.risk.state")
        return cls(tuple(seen), halts, day, pnl)


def state_facts(doc: object, what: str) -> tuple[tuple[tuple[str, str], ...], str | None, int | None]:
    """(halts, utc_day, daily P&L) of a risk state document (``risk-state.json``); None is no state."""
    if doc is None:
        return (), None, None
    d = _obj(doc, what)
    halts = d.get("halts")
    if not isinstance(halts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in halts.items()):
        raise _Bad(f"{what}.halts: expected {{gate: value}}")
    day = _str(d, "utc_day", what, max_len=10)
    pnl = parse_amount(d.get("daily_pnl_wei"), f"{what}.daily_pnl_wei")
    return tuple(sorted(halts.items())), day, pnl


@attrs.frozen
class Summary:
    """The parts of ``summary.json`` the checks read."""

    panics: int
    final: bool
    started_unix: int | None
    updated_unix: int | None
    duration_s: int | None
    sources: dict[str, dict[str, Any]]
    risk_rejected: dict[str, int]
    builder_requests: int
    risk: RiskRecord | None

    @classmethod
    def from_doc(cls, doc: object) -> Summary:
        d = _obj(doc, "summary")
        sources: dict[str, dict[str, Any]] = {}
        for name, s in _obj(d.get("sources", {}), "summary.sources").items():
            s = _obj(s, f"summary.sources.{name}")
            for key in ("built", "submitted", "shadow_blocked", "included", "not_included"):
                _int(s, key, f"summary.sources.{name}", required=False)
            rej = _obj(s.get("candidate_rejected", {}), f"summary.sources.{name}.candidate_rejected")
            for k in rej:
                _int(rej, k, f"summary.sources.{name}.candidate_rejected")
            sources[str(name)] = s
        rr = _obj(d.get("risk_rejected", {}), "summary.risk_rejected")
        risk_rejected = {str(k): _int(rr, k, "summary.risk_rejected") or 0 for k in rr}
        br = _obj(d.get("builder_requests", {}), "summary.builder_requests")
        requests = 0
        for b, outcomes in br.items():
            o = _obj(outcomes, f"summary.builder_requests.{b}")
            requests += sum(_int(o, k, f"summary.builder_requests.{b}") or 0 for k in o)
        return cls(
            panics=_int(d, "panics", "summary") or 0,
            final=bool(_bool(d, "final", "summary", required=False)),
            started_unix=_unix(d, "started_unix", "summary"),
            updated_unix=_unix(d, "updated_unix", "summary"),
            duration_s=_int(d, "duration_s", "summary", required=False),
            sources=sources,
            risk_rejected=risk_rejected,
            builder_requests=requests,
            risk=None if d.get("risk") is None else RiskRecord.from_doc(d["risk"]),
        )

    def submitted(self) -> int:
        return sum(int(s.get("submitted") or 0) for s in self.sources.values())


@attrs.frozen
class Meta:
    """The parts of ``run.json`` the checks read; every one optional (old runs lack some)."""

    mode: str | None
    run_id: str | None
    started_at: dt.datetime | None
    mempool_tracking: bool | None
    limits: dict[str, int]
    state_file: str | None

    @classmethod
    def from_doc(cls, doc: object) -> Meta:
        d = _obj(doc, "run.json")
        mode = _str(d, "mode", "run.json", required=False, max_len=16)
        if mode is not None and mode not in ("shadow", "live"):
            raise _Bad(f"run.json.mode: {mode!r} is neither shadow nor live")
        started = d.get("started_at")
        limits_raw = _obj(d.get("limits", {}), "run.json.limits")
        # Only the limits a check reads are parsed: other keys may be of any type.
        limits = {k: parse_amount(limits_raw[k], f"run.json.limits.{k}") for k in _READ_LIMITS if k in limits_raw}
        return cls(
            mode=mode,
            run_id=_str(d, "run_id", "run.json", required=False),
            started_at=None if started is None else _stamp_time(started, "run.json.started_at"),
            mempool_tracking=_bool(d, "mempool_tracking", "run.json", required=False),
            limits=limits,
            state_file=_str(d, "state_file", "run.json", required=False, max_len=4096),
        )


@attrs.frozen
class RunData:
    """One run directory, read and checked.

    ``path`` is the real path (symlinks resolved); ``identity`` the run's id
    (``run_id``, or ``sha256:<digest of run.json>`` for runs that predate it, or
    the real path when there is no ``run.json``); ``digest`` covers every file read,
    so two directories with one identity can be told apart from a faithful copy.
    """

    path: Path
    meta: Meta
    summary: Summary | None
    bundles: tuple[Bundle, ...]
    inclusions: tuple[Inclusion, ...]
    identity: str
    digest: str
    has_inclusions_file: bool = False
    #: The risk state file ``run.json`` names (``state_file``), read now: (path, halts, day, P&L),
    #: or None when the run names none or it does not exist (any more).
    persisted: tuple[str, tuple[tuple[str, str], ...], str | None, int | None] | None = None

    @property
    def mode(self) -> str:
        return self.meta.mode or "?"

    def interval(self) -> tuple[dt.datetime, dt.datetime] | None:
        """[start, last summary update] in UTC, or None when the run does not record both."""
        start = self.meta.started_at
        if start is None and self.summary is not None and self.summary.started_unix is not None:
            start = dt.datetime.fromtimestamp(self.summary.started_unix, dt.UTC)
        end = None
        if self.summary is not None and self.summary.updated_unix is not None:
            end = dt.datetime.fromtimestamp(self.summary.updated_unix, dt.UTC)
        if start is None or end is None or end < start:
            return None
        return start, end


def _load_one(path: Path, problems: list[Problem]) -> RunData | None:
    """Read one run directory (already resolved); problems are appended, None when unusable."""
    before = len(problems)
    digest = hashlib.sha256()

    def doc_of(name: str, cap: int, build: Callable[[Any], Any]) -> Any:
        f = path / name
        try:
            data = read_bytes(f, cap)
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
            return build(parse_json(data)), data
        except _Bad as exc:
            problems.append(Problem(str(f), str(exc)))
        except Exception as exc:  # noqa: BLE001 - a shape no rule above foresaw: still named, never a pass
            problems.append(Problem(str(f), f"unreadable as evidence ({type(exc).__name__})"))
        return None, None

    def present(name: str) -> bool:
        return os.path.lexists(path / name)

    meta, meta_bytes = doc_of("run.json", MAX_META_BYTES, Meta.from_doc) if present("run.json") else (None, None)
    summary, _ = doc_of("summary.json", MAX_META_BYTES, Summary.from_doc) if present("summary.json") else (None, None)

    bundles: list[Bundle] = []
    bdir = path / "bundles"
    if os.path.lexists(bdir):
        try:
            st = os.lstat(bdir)
            if not stat.S_ISDIR(st.st_mode):
                raise _Bad(f"is {_kind(st.st_mode)}, not a directory")
            names = []
            with os.scandir(bdir) as it:
                for entry in it:
                    if entry.name.endswith(".json") and not entry.name.startswith("."):
                        names.append(entry.name)
                        if len(names) > MAX_BUNDLES:
                            raise _Bad(f"holds more than {MAX_BUNDLES} dumps, over the cap")
        except (_Bad, OSError) as exc:
            reason = str(exc) if isinstance(exc, _Bad) else f"cannot list it ({exc.strerror})"
            problems.append(Problem(str(bdir), reason))
            names = []
        numbered: list[tuple[str, int, Bundle]] = []
        for name in sorted(names):
            b, _ = doc_of(f"bundles/{name}", MAX_BUNDLE_BYTES, lambda d: Bundle.from_doc(d, name))  # called at once
            if b is None:
                continue
            # aether names a dump <arb_id>.json, a dedup twin <arb_id>-<n>.json; nothing else.
            twin = re.fullmatch(re.escape(b.arb_id) + r"-([0-9]{1,9})\.json", name)
            if name != f"{b.arb_id}.json" and twin is None:
                problems.append(Problem(str(bdir / name), f"file name does not match its arb_id {b.arb_id!r:.80}"))
                continue
            numbered.append((b.arb_id, 1 if twin is None else int(twin.group(1)), b))
        # The first dump of an arb_id (<arb_id>.json, the one the gates judged first) comes
        # before its twins: '-' sorts before '.', so by file name <arb_id>-2.json would
        # come first and a report keeping the first dump per arb_id would show the
        # rejected twin instead of the bundle that passed.
        bundles.extend(b for _arb, _n, b in sorted(numbered, key=lambda t: (t[0], t[1])))

    inclusions: list[Inclusion] = []
    has_inc = present("inclusions.jsonl")
    if has_inc:
        f = path / "inclusions.jsonl"
        try:
            data = read_bytes(f, MAX_INCLUSIONS_BYTES)
            digest.update(b"inclusions.jsonl\0" + hashlib.sha256(data).digest())
            for i, raw in enumerate(data.split(b"\n"), 1):
                if not raw.strip():
                    continue
                try:
                    inclusions.append(Inclusion.from_doc(parse_json(raw), f"{f}:{i}"))
                except _Bad as exc:
                    problems.append(Problem(f"{f}:{i}", str(exc)))
                except Exception as exc:  # noqa: BLE001 - as in doc_of
                    problems.append(Problem(f"{f}:{i}", f"unreadable as evidence ({type(exc).__name__})"))
        except _Bad as exc:
            problems.append(Problem(str(f), str(exc)))

    persisted = None
    if meta is not None and meta.state_file is not None and os.path.lexists(meta.state_file):
        try:
            halts, day, pnl = state_facts(read_json(Path(meta.state_file), MAX_META_BYTES, follow=True),
                                          "risk state")
            persisted = (meta.state_file, halts, day, pnl)
        except _Bad as exc:
            problems.append(Problem(f"{meta.state_file} (risk state file named by {path / 'run.json'})", str(exc)))

    nets: dict[str, set[int]] = {}
    for b in bundles:
        nets.setdefault(b.arb_id, set()).add(b.net_wei)
    for inc in inclusions:
        if inc.arb_id in nets and inc.predicted_wei not in nets[inc.arb_id]:
            problems.append(Problem(inc.line, f"predicted_profit_wei {inc.predicted_wei} differs from the dump's "
                                              f"expected_net_profit_wei for {inc.arb_id}: edited evidence"))

    if len(problems) > before:
        return None
    if meta is None and summary is None and not bundles:
        problems.append(Problem(str(path), "empty (no run.json, summary.json or bundles/*.json): not a run directory"))
        return None
    meta = meta or Meta(None, None, None, None, {}, None)
    if meta.run_id is not None:
        identity = f"run_id:{meta.run_id}"
    elif meta_bytes is not None:
        identity = "sha256:" + hashlib.sha256(meta_bytes).hexdigest()[:16]
    else:
        identity = f"path:{path}"
    return RunData(path, meta, summary, tuple(bundles), tuple(inclusions), identity, digest.hexdigest(), has_inc,
                   persisted)


@attrs.frozen
class LoadResult:
    """The runs to count (each once, sorted by real path) and what was decided to get there."""

    runs: tuple[RunData, ...]
    notes: tuple[Note, ...]


def load_runs(dirs: Iterable[Path]) -> LoadResult:
    """Read run directories, each run once; see the module docstring for the rules.

    Raises:
        RunDirError: any missing, overlapping, inconsistent or malformed input,
            one :class:`Problem` per line, every one found (not only the first).
    """
    problems: list[Problem] = []
    notes: list[Note] = []
    spellings: dict[Path, list[str]] = {}
    for d in dirs:
        try:
            real = Path(os.path.realpath(d, strict=True))
        except (OSError, ValueError) as exc:
            problems.append(Problem(str(d), f"no such run directory ({getattr(exc, 'strerror', None) or exc})"))
            continue
        if not real.is_dir():
            problems.append(Problem(str(d), "not a directory"))
            continue
        spellings.setdefault(real, []).append(str(d))
    for real, names in sorted(spellings.items()):
        if len(names) > 1:
            notes.append(Note(f"{real}: named {len(names)} times ({', '.join(names)}); counted once"))
    reals = sorted(spellings)
    for a in reals:
        for b in reals:
            if a != b and a in b.parents:
                problems.append(Problem(str(b), f"is inside {a}, also named: overlapping directories; "
                                                "name each run directory once"))
    if problems:
        raise RunDirError(problems)

    loaded = [r for real in reals if (r := _load_one(real, problems)) is not None]
    if problems:
        raise RunDirError(problems)

    by_identity: dict[str, RunData] = {}
    runs: list[RunData] = []
    for r in loaded:
        first = by_identity.get(r.identity)
        if first is None:
            by_identity[r.identity] = r
            runs.append(r)
        elif first.digest == r.digest:
            notes.append(Note(f"{r.path}: a copy of {first.path} (same run identity {r.identity}, identical "
                              "files); counted once"))
        else:
            problems.append(Problem(str(r.path), f"has the run identity {r.identity} of {first.path} but different "
                                                 "files (a partial copy or an edited run): name only one of them"))
    if problems:
        raise RunDirError(problems)

    seen: dict[str, Path] = {}
    repeated: dict[str, list[Path]] = {}
    for r in runs:
        for arb in dict.fromkeys(b.arb_id for b in r.bundles):
            if arb in seen:
                repeated.setdefault(arb, [seen[arb]]).append(r.path)
            else:
                seen[arb] = r.path
    if repeated:
        arb, where = next(iter(sorted(repeated.items())))
        notes.append(Note(f"{len(repeated)} arb_id(s) appear in more than one run directory (e.g. {arb} in "
                          f"{', '.join(map(str, where))}); each counted once"))
    by_envelope: dict[str, tuple[str, Path]] = {}
    renamed: list[tuple[str, Path, str, Path]] = []
    for r in runs:
        for dump in r.bundles:
            earlier = by_envelope.setdefault(dump.envelope_digest, (dump.arb_id, r.path))
            if earlier[0] != dump.arb_id:
                renamed.append((dump.arb_id, r.path, *earlier))
    if renamed:
        arb, path, arb0, path0 = renamed[0]
        notes.append(Note(f"{len(renamed)} dump(s) carry the signed transactions of another arb_id (e.g. {arb} in "
                          f"{path} = {arb0} in {path0}); each bundle counted once"))
    return LoadResult(tuple(runs), tuple(notes))


def load_run(path: Path) -> RunData:
    """One run directory (``aether report``).

    Raises:
        RunDirError: it is missing, empty or holds malformed files (all named).
    """
    return load_runs([path]).runs[0]
