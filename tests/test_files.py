"""The one bounded regular-file reader (config/state, key files, run files) on the inputs that must fail."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from aether import _files
from aether._files import FileReadError, ReadFailure, read_regular_file


def _kind(path: Path, cap: int = 100, **kw: bool) -> ReadFailure:
    with pytest.raises(FileReadError) as info:
        read_regular_file(path, cap, **kw)
    assert info.value.cap == cap
    return info.value.kind


def test_a_regular_file_is_read_whole_with_its_stat(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    f.chmod(0o640)
    data, st = read_regular_file(f, 100)
    assert data == b"x" * 100 and stat.S_IMODE(st.st_mode) == 0o640
    assert read_regular_file(tmp_path / "f", 100, follow=False)[0] == data


def test_missing_directory_fifo_and_device_are_refused_without_a_hang(tmp_path: Path) -> None:
    assert _kind(tmp_path / "nope") is ReadFailure.MISSING
    assert _kind(tmp_path) is ReadFailure.NOT_REGULAR
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: a blocking open would hang here
    with pytest.raises(FileReadError) as info:
        read_regular_file(fifo, 10)
    assert info.value.kind is ReadFailure.NOT_REGULAR and stat.S_ISFIFO(info.value.mode)
    assert _kind(Path("/dev/zero")) is ReadFailure.NOT_REGULAR  # endless if it were read
    assert _kind(Path("bad\0path")) is ReadFailure.OPEN


def test_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    f = tmp_path / "big"
    f.write_bytes(b"x" * 101)
    with pytest.raises(FileReadError) as info:
        read_regular_file(f, 100)
    assert info.value.kind is ReadFailure.TOO_LARGE and info.value.size == 101


def test_a_file_that_grows_past_the_cap_while_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fstat said it fit; the bytes say otherwise: at most cap + 1 bytes are read, then refused."""
    f = tmp_path / "growing"
    f.write_bytes(b"x" * 5000)
    real_fstat = os.fstat
    reads: list[int] = []
    real_read = os.read

    def small_fstat(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 10,
                               st.st_atime, st.st_mtime, st.st_ctime))

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(_files.os, "fstat", small_fstat)
    monkeypatch.setattr(_files.os, "read", counting_read)
    assert _kind(f, cap=100) is ReadFailure.GREW
    assert sum(reads) <= 101


def test_a_symlink_is_followed_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"ok")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_regular_file(link, 10)[0] == b"ok"
    assert _kind(link, cap=10, follow=False) is ReadFailure.SYMLINK
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    assert _kind(dangling, cap=10) is ReadFailure.MISSING
    assert _kind(dangling, cap=10, follow=False) is ReadFailure.SYMLINK


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway")
def test_an_unreadable_file_is_an_open_failure_with_the_os_reason(tmp_path: Path) -> None:
    f = tmp_path / "secret"
    f.write_bytes(b"x")
    f.chmod(0)
    with pytest.raises(FileReadError) as info:
        read_regular_file(f, 10)
    assert info.value.kind is ReadFailure.OPEN and "ermission" in info.value.reason
