"""Signing keys from files, with errors that never carry key material.

The searcher key (``AETHER_SIGNER_KEY_FILE``) and the builder auth key
(``AETHER_FLASHBOTS_AUTH_KEY_FILE``) live in files the operator owns. A file
that is missing, unreadable or malformed is a :class:`ConfigError` whose one
line names the variable and the path and says what is wrong; the file's content
is never quoted (a near-valid key with one typo is still a secret). Exceptions
from eth-account are not chained as ``__cause__`` because their text may echo
the value.
"""

from __future__ import annotations

import logging
import re
import stat
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from . import _files
from ._errors import ConfigError

__all__ = ["load_key_file"]

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
#: The largest valid secp256k1 private key is n - 1.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_MAX_KEY_FILE_BYTES = 4096


def _key_file_message(exc: _files.FileReadError) -> str:
    kind = exc.kind
    if kind is _files.ReadFailure.MISSING:
        return "key file does not exist"
    if kind is _files.ReadFailure.NOT_REGULAR:
        return "not a regular file"
    if kind in (_files.ReadFailure.TOO_LARGE, _files.ReadFailure.GREW):
        return "malformed key file (too large for a hex private key)"
    if kind is _files.ReadFailure.READ:
        return f"cannot read the key file ({exc.reason})"
    return f"cannot open the key file ({exc.reason})"


def load_key_file(path: Path, variable: str) -> LocalAccount:
    """Load a hex private key from ``path``.

    Accepts 64 hex characters, with or without ``0x``, with surrounding
    whitespace. A file readable by group or others is accepted with a warning
    (the warning names the path and the mode only).

    Args:
        path: the key file.
        variable: the environment variable that named it, for the message.

    Returns:
        The eth-account local account.

    Raises:
        ConfigError: missing, unreadable, too large or malformed; the message
            names ``variable`` and ``path`` and never contains the content.
    """
    where = f"{variable}={str(path)!r}"
    # Opened without blocking and checked on the descriptor (aether._files): a FIFO or a
    # device named as the key file is an error, never a hang, and the path cannot be
    # swapped after the check.
    try:
        raw, st = _files.read_regular_file(path, _MAX_KEY_FILE_BYTES)
    except _files.FileReadError as exc:
        raise ConfigError(f"{where}: {_key_file_message(exc)}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: key file mode is %o; readable by group or others, use chmod 600", where,
                    st.st_mode & 0o777)
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: malformed key file (not ASCII text)") from None
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if not _HEX64.fullmatch(text):
        raise ConfigError(f"{where}: malformed key file (expected 64 hex characters, optionally 0x-prefixed)")
    secret = int(text, 16)
    if not 0 < secret < _SECP256K1_N:
        raise ConfigError(f"{where}: malformed key file (value is not a valid secp256k1 private key)")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(text))
    except Exception:  # noqa: BLE001 - never chain: the library message may echo the key
        raise ConfigError(f"{where}: malformed key file (eth-account refused the key)") from None
    finally:
        del raw, text, secret
    return account
