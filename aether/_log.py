"""Logging: one line per event on stderr, with secrets scrubbed as a last line of defence.

aether never formats a key into a message on purpose; :class:`SecretFilter`
exists for the accident (a library's repr, a traceback holding a local). Every
secret loaded at start-up is registered with :func:`register_secret`, and any
log record whose text (message, arguments or traceback) contains it is
rewritten with the secret replaced by ``<redacted>``. An exception that escapes
everything (the interpreter's or a thread's last-resort traceback) goes through
the same filter: :func:`configure_logging` routes ``sys.excepthook`` and
``threading.excepthook`` to the log.
"""

from __future__ import annotations

import logging
import sys
import threading
import types

__all__ = ["configure_logging", "register_secret"]

_SECRETS: set[str] = set()


def register_secret(secret: str) -> None:
    """Scrub ``secret`` (and its 0x-less / lower / upper forms) from every log line."""
    s = secret.strip()
    if s.startswith(("0x", "0X")):
        s = s[2:]
    if len(s) < 16:
        return
    for form in (s, s.lower(), s.upper()):
        _SECRETS.add(form)


def _scrub(text: str) -> str:
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, "<redacted>")
    return text


class SecretFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        try:
            msg = record.getMessage()
        except (TypeError, ValueError):  # a malformed call must not take the caller down
            msg = f"{record.msg} {record.args!r}"
        scrubbed = _scrub(msg)
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _scrub(formatted)
            record.exc_info = None
        if scrubbed != msg or record.args:
            record.msg, record.args = scrubbed, None
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The default hooks print tracebacks straight to stderr, past the filter.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    logging.getLogger("aether").critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("aether").critical(
        "uncaught exception in thread %s", name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )
