"""One bounded reader for the regular files aether reads whole: config and state, key files, run files.

Every such file is opened with ``O_NONBLOCK`` (opening a FIFO returns at once
instead of waiting for a writer), checked with ``fstat`` on the open descriptor
(a FIFO, a device or a directory is refused, and the check cannot be raced by
swapping the path after it), and read to at most ``cap + 1`` bytes (a file that
grew after the ``fstat`` is refused too, never read without bound).

The failure is neutral (:class:`FileReadError` with a :class:`ReadFailure` kind
and what the caller needs to word it): each caller maps it to its own error and
message (``ConfigError`` for config and key files, the report's refusal for run
files), so none of their messages or exit codes depend on this module's wording.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
from pathlib import Path

__all__ = ["FileReadError", "ReadFailure", "read_regular_file"]

_CHUNK = 1 << 20


class ReadFailure(enum.StrEnum):
    """Why a file was not read."""

    MISSING = "missing"  # no such file (open's ENOENT)
    SYMLINK = "symlink"  # a symlink, and the caller asked not to follow one
    OPEN = "open"  # any other failure to open it (permissions, a NUL in the path, ...)
    NOT_REGULAR = "not_regular"  # a directory, FIFO, device or socket
    TOO_LARGE = "too_large"  # fstat says it is over the cap
    GREW = "grew"  # it passed the cap while being read
    READ = "read"  # read(2) failed


class FileReadError(Exception):
    """A file that was not read, and why (never its content).

    Attributes:
        kind: the :class:`ReadFailure`.
        reason: the operating system's words for an open or read failure (``strerror``,
            or the exception's text when there is none); empty otherwise.
        mode: ``st_mode`` from ``fstat`` when the file was opened, else 0.
        size: ``st_size`` from ``fstat`` when the file was opened, else 0.
        cap: the cap the caller gave.
    """

    def __init__(self, kind: ReadFailure, *, reason: str = "", mode: int = 0, size: int = 0, cap: int = 0) -> None:
        super().__init__(f"{kind}: {reason}" if reason else str(kind))
        self.kind = kind
        self.reason = reason
        self.mode = mode
        self.size = size
        self.cap = cap


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def read_regular_file(path: Path | str, cap: int, *, follow: bool = True) -> tuple[bytes, os.stat_result]:
    """The whole content of the regular file ``path`` (at most ``cap`` bytes) and its ``fstat``.

    Args:
        path: the file.
        cap: the most bytes accepted.
        follow: follow a symlink (config and key files may be one); ``False`` refuses
            it (``O_NOFOLLOW``: a run directory never holds one, so one there is an
            alias or a trap).

    Raises:
        FileReadError: the file was not read; its ``kind`` says why.
    """
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
             | (0 if follow else getattr(os, "O_NOFOLLOW", 0)))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise FileReadError(ReadFailure.MISSING, reason=_reason(exc), cap=cap) from None
    except OSError as exc:
        kind = ReadFailure.SYMLINK if not follow and exc.errno == errno.ELOOP else ReadFailure.OPEN
        raise FileReadError(kind, reason=_reason(exc), cap=cap) from None
    except ValueError as exc:  # a NUL in the path
        raise FileReadError(ReadFailure.OPEN, reason=_reason(exc), cap=cap) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileReadError(ReadFailure.NOT_REGULAR, mode=st.st_mode, size=st.st_size, cap=cap)
        if st.st_size > cap:
            raise FileReadError(ReadFailure.TOO_LARGE, mode=st.st_mode, size=st.st_size, cap=cap)
        chunks: list[bytes] = []
        left = cap + 1
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > cap:
            raise FileReadError(ReadFailure.GREW, mode=st.st_mode, size=len(data), cap=cap)
        return data, st
    except OSError as exc:
        raise FileReadError(ReadFailure.READ, reason=_reason(exc), cap=cap) from None
    finally:
        os.close(fd)
