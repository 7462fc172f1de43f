"""Key files: accepted spellings, and errors that name the file but never the key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aether._errors import ConfigError
from aether.keys import load_key_file

# anvil's well-known dev key #1 (public knowledge, fine for tests).
KEY = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ADDR = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.mark.parametrize("text", [KEY, "0x" + KEY, f"  0x{KEY}\n", KEY.upper(), f"\n{KEY}\r\n"])
async def test_accepts_hex_with_or_without_prefix(tmp_path: Path, text: str) -> None:
    p = tmp_path / "k"
    p.write_text(text)
    p.chmod(0o600)
    assert load_key_file(p, "AETHER_SIGNER_KEY_FILE").address == ADDR


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (KEY[:-1], "malformed"),  # one char short: near-valid, still a secret
        (KEY + "0", "malformed"),
        (KEY[:-1] + "g", "malformed"),
        ("0x" + "0" * 64, "not a valid secp256k1"),
        (f"{KEY}\n{KEY}", "malformed"),
        ("", "malformed"),
    ],
)
async def test_malformed_names_file_never_content(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, what: str
) -> None:
    p = tmp_path / "signer.key"
    p.write_text(content)
    p.chmod(0o644)  # also triggers the permissions warning
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as ei:
        load_key_file(p, "AETHER_SIGNER_KEY_FILE")
    msg = str(ei.value)
    assert "AETHER_SIGNER_KEY_FILE" in msg and str(p) in msg and what in msg
    assert "\n" not in msg
    for leak in (KEY[:16], KEY[-16:], KEY[:-1][:20]):
        assert leak.lower() not in msg.lower()
        assert leak.lower() not in caplog.text.lower()
    assert ei.value.__cause__ is None and ei.value.__context__ is None or KEY not in repr(ei.value.__context__)


async def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"AETHER_FLASHBOTS_AUTH_KEY_FILE=.*nope.*does not exist"):
        load_key_file(tmp_path / "nope", "AETHER_FLASHBOTS_AUTH_KEY_FILE")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_key_file(tmp_path, "AETHER_SIGNER_KEY_FILE")
    p = tmp_path / "k"
    p.write_text(KEY)
    p.chmod(0)
    import os

    if os.geteuid() != 0:  # root reads anything
        with pytest.raises(ConfigError, match="cannot read"):
            load_key_file(p, "AETHER_SIGNER_KEY_FILE")


async def test_group_readable_warns_without_content(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "k"
    p.write_text(KEY)
    p.chmod(0o640)
    caplog.set_level(logging.WARNING)
    assert load_key_file(p, "AETHER_SIGNER_KEY_FILE").address == ADDR
    assert "chmod 600" in caplog.text and KEY not in caplog.text
