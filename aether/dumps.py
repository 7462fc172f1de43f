"""Forensic JSON dumps: one file per built bundle, written atomically.

Path: ``${AETHER_REPORTS_DIR:-reports}/shadow_mempool_<ts>/bundles/<arb_id>.json``
(``live_mempool_<ts>`` in live mode), ``<ts>`` a sortable UTC stamp fixed at
start-up; a second bundle with the same ``arb_id`` (a re-announced victim built
again for the same block) goes to ``<arb_id>-2.json`` and so on, never over the first. The JSON carries every field of the seed's shape, amounts as decimal
strings and transaction bytes as 0x-hex, plus a few forensic extras (route,
verdict, victim age). A dump is written to a temporary file in the same
directory, flushed, fsynced and renamed, so a reader (or a crash) never sees a
partial file. Directories are 0700 and files 0600: a dump holds signed
transactions that anyone could broadcast.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import secrets
from pathlib import Path
from typing import Any

import orjson

from .messages import Bundle, Verdict

__all__ = ["RunDir", "bundle_document", "make_private_dirs", "utc_stamp", "write_bytes_atomic", "write_json_atomic"]


def make_private_dirs(path: Path) -> None:
    """``mkdir -p`` where every level created is 0700.

    ``Path.mkdir(parents=True, mode=...)`` applies ``mode`` to the last level
    only; the parents get the umask's default (0777 under ``umask 000``).
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            pass


def utc_stamp(now: _dt.datetime | None = None) -> str:
    """A sortable UTC stamp for run directory names: ``20261124T205012Z``."""
    now = now or _dt.datetime.now(_dt.UTC)
    return now.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: tmp (0600), fsync, rename, fsync dir.

    The temporary name is unique (pid and random), created exclusively in the
    same directory, so concurrent writers never share one and a crash leaves
    at most a stray ``.tmp`` beside, never a partial ``path``.

    Raises:
        OSError: the directory is not writable or the disk is full. Nothing
            partial is left behind under ``path``; the temporary file is removed.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    except OSError as exc:  # pragma: no cover - filesystems that cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(dir_fd)


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write ``doc`` as JSON to ``path`` with :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _iso_ns(ns: int) -> str | None:
    if ns <= 0:
        return None
    t = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC).replace(microsecond=(ns // 1000) % 1_000_000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bundle_document(verdict: Verdict, *, mode: str, outcome: str) -> dict[str, Any]:
    """The forensic JSON of one bundle: the seed's fields first, then extras."""
    b: Bundle = verdict.bundle
    c = b.candidate
    victim = c.victim
    return {
        # --- the seed's shape (a contract with the operators' tooling)
        "arb_id": b.arb_id,
        "source": b.source,
        "victim_tx_hash": None if victim is None else victim.hash_hex,
        "target_block": b.target_block,
        "built_at": b.built_at,
        "envelope": [_hex(tx) for tx in b.envelope],
        "expected_gross_profit_wei": str(b.expected_gross_profit_wei),
        "expected_net_profit_wei": str(b.expected_net_profit_wei),
        "tip_share_bps": b.tip_share_bps,
        "gas_used": b.gas_used,
        "base_fee_wei": str(b.base_fee_wei),
        "priority_fee_wei": str(b.priority_fee_wei),
        "flashloan_provider": b.flashloan_provider,
        "flashloan_amount": str(b.flashloan_amount),
        "risk_decisions": [{"gate": d.gate, "passed": d.passed, "value": d.value} for d in verdict.decisions],
        # --- extras for forensics
        "mode": mode,
        "outcome": outcome,
        "rejected_reason": verdict.reason,
        "head_number": c.head_number,
        "signer": b.signer,
        "nonces": list(b.nonces),
        "our_tx_hashes": [_hex(h) for h in b.our_tx_hashes],
        "max_fee_per_gas_wei": str(b.max_fee_per_gas_wei),
        "validated": c.validated,
        "simulated_gas": list(c.simulated_gas),
        "amount_in_wei": str(c.amount_in),
        "amount_out_wei": str(c.amount_out),
        "route": [
            {
                "dex": h.dex,
                "router": h.router,
                "pair": h.pair,
                "token_in": h.token_in,
                "token_out": h.token_out,
                "amount_in": str(h.amount_in),
                "amount_out": str(h.amount_out),
                "kind": str(h.kind),
                "fee": h.fee,
            }
            for h in c.route
        ],
        "victim_first_seen": None if victim is None else _iso_ns(victim.first_seen_ns),
        "victim_age_ms_at_gate": _victim_age_ms(verdict),
    }


def _victim_age_ms(verdict: Verdict) -> int | None:
    for d in verdict.decisions:
        if d.gate == "victim_freshness":
            try:
                return int(d.value)
            except ValueError:
                return None
    return None


class RunDir:
    """One run's directory: ``<reports>/<mode>_mempool_<ts>/`` with ``bundles/`` inside."""

    def __init__(self, reports_dir: Path, *, shadow: bool, stamp: str | None = None) -> None:
        self.stamp = stamp or utc_stamp()
        self.mode = "shadow" if shadow else "live"
        self.path = reports_dir / f"{self.mode}_mempool_{self.stamp}"
        self.bundles = self.path / "bundles"

    def create(self) -> None:
        """Create the directories (0700). Raises OSError when not writable."""
        make_private_dirs(self.path.parent)
        # A restart within the same second (exit 70, then the OS supervisor) gets its own directory.
        base, n = self.path, 1
        while True:
            try:
                self.path.mkdir(mode=0o700)
                break
            except FileExistsError:
                n += 1
                self.path = base.with_name(f"{base.name}-{n}")
        self.bundles = self.path / "bundles"
        self.bundles.mkdir(mode=0o700, exist_ok=True)
        # Prove we can write here now rather than at the first bundle.
        probe = self.path / ".write-probe"
        write_json_atomic(probe, {"ok": True})
        probe.unlink()

    def bundle_path(self, arb_id: str) -> Path:
        return self.bundles / f"{arb_id}.json"

    def write_bundle(self, verdict: Verdict, *, outcome: str) -> Path:
        """Write one verdict's dump; a twin never overwrites an earlier dump.

        ``arb_id`` is stable for (target block, victim, route, amounts), so a
        victim the node announces twice (after a WebSocket reconnect) can be
        built twice into the same id: the second, rejected by the dedup gate, is
        written as ``<arb_id>-2.json`` rather than over the first (which may be
        the one that passed). One dump per built bundle, always. There is one
        writer per run directory (the sink or the submit actor), so checking for
        the name before the atomic rename is enough.
        """
        base = verdict.bundle.arb_id
        path = self.bundle_path(base)
        n = 1
        while path.exists():
            n += 1
            path = self.bundles / f"{base}-{n}.json"
        write_json_atomic(path, bundle_document(verdict, mode=self.mode, outcome=outcome))
        return path

    def annotate_settlement(self, arb_id: str, settlement: dict[str, Any]) -> bool:
        """Add a bundle's settlement to its dump under ``"settlement"`` (atomically); False if no dump.

        The dump of the bundle that passed is the first of its twins not
        ``rejected``. Called by the in-flight actor a block or more after the
        end of the line wrote the dump; a dump not written yet is left alone
        (``settlements.jsonl`` is the record either way).

        Raises:
            OSError: the dump exists but cannot be rewritten.
        """
        for n in range(1, 4):
            path = self.bundle_path(arb_id) if n == 1 else self.bundles / f"{arb_id}-{n}.json"
            try:
                doc = orjson.loads(path.read_bytes())
            except FileNotFoundError:
                return False
            except orjson.JSONDecodeError:
                return False
            if not isinstance(doc, dict) or doc.get("outcome") == "rejected":
                continue
            doc["settlement"] = settlement
            write_json_atomic(path, doc)
            return True
        return False

    def write_meta(self, name: str, doc: Any) -> Path:
        path = self.path / name
        write_json_atomic(path, doc)
        return path
