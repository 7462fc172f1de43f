"""The risk state file: JSON, written atomically, read back strictly.

Why a file at all: a loss limit that a crash (or the OS supervisor's restart)
resets to zero is no limit. The engine saves daily P&L, the revert streak, the
HALT latches, the pause and the dedup keys on every change that matters, and a
new process reloads them before it evaluates anything.

Why so strict on reading: a file that exists but does not parse is *not* "no
state". Starting from zero would silently forget a tripped loss limit, so a
corrupt file stops start-up with a :class:`ConfigError` naming it; the operator
decides (inspect it, or move it aside knowingly). A missing file is a first run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from .._errors import ConfigError, RiskError

__all__ = ["RiskStore", "StoreStatistics"]


@attrs.frozen
class StoreStatistics:
    """Counters of one store: loads, saves and failed saves."""

    loads: int
    saves: int
    save_failures: int


class RiskStore:
    """One JSON file holding the risk engine's persistent state.

    Writes go to a temporary file in the same directory, which is flushed,
    fsynced and renamed over the old one, and then the directory is fsynced:
    after a crash the file is either the old state or the new one, never a
    mix. The file is 0600 and a directory this store creates is 0700 (the
    state reveals trading activity).

    Args:
        path: the state file (``Settings.state_file``, ``AETHER_STATE_FILE``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._loads = 0
        self._saves = 0
        self._save_failures = 0

    def __repr__(self) -> str:
        return f"RiskStore({str(self.path)!r})"

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when the file does not exist (a first run).

        Raises:
            ConfigError: the file exists but cannot be read, is not JSON, or is
                not a JSON object; the message names the file.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(
                f"risk state file {str(self.path)!r}: cannot read it ({exc.strerror or exc}); "
                "refusing to start without the saved loss limit"
            ) from exc
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"risk state file {str(self.path)!r}: corrupt, not JSON ({exc}); "
                "refusing to start from zero (inspect it, or move it aside to accept losing the saved risk state)"
            ) from exc
        if not isinstance(doc, dict):
            raise ConfigError(
                f"risk state file {str(self.path)!r}: corrupt, expected a JSON object, got {type(doc).__name__}"
            )
        self._loads += 1
        return doc

    def save(self, state: dict[str, Any]) -> None:
        """Replace the file with ``state`` atomically.

        Raises:
            RiskError: the state is not JSON-serialisable or the write failed
                (directory not writable, disk full). The old file is left as it
                was and no temporary file is left behind. Callers fail closed.
        """
        try:
            data = json.dumps(state, sort_keys=True, indent=1, allow_nan=False).encode() + b"\n"
        except (TypeError, ValueError) as exc:
            self._save_failures += 1
            raise RiskError(f"risk state for {str(self.path)!r} is not serialisable: {exc}") from exc
        try:
            self._write(data)
        except OSError as exc:
            self._save_failures += 1
            raise RiskError(f"cannot write risk state file {str(self.path)!r}: {exc.strerror or exc}") from exc
        self._saves += 1

    def _write(self, data: bytes) -> None:
        from ..dumps import make_private_dirs, write_bytes_atomic

        if not self.path.parent.exists():
            make_private_dirs(self.path.parent)  # every level 0700, not just the last
        write_bytes_atomic(self.path, data)

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(loads=self._loads, saves=self._saves, save_failures=self._save_failures)
