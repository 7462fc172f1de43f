"""The ``aether`` console script.

    aether run [--duration SECONDS]          the node process (reads the environment)
    aether devnet [--env-file FILE] ...      the embedded local chain, victim traffic, local builder
    aether report DIR [--html FILE]          summarise a run directory
    aether rollout check --stage B|C DIR...  is the runbook's gate into that stage met?
    aether prepare [--yes]                   one-time token approvals for the searcher account
    aether --version
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from . import __version__
from .report._rollout import Stage

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error shape: one line on stderr, exit 2 (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="aether", description="Public-mempool backrun MEV, shadow-first.")
    p.add_argument("--version", action="version", version=f"aether {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the node process (configured by the environment)")
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="stop cleanly after this many seconds (default: run until SIGINT/SIGTERM)")

    sub.add_parser("devnet", help="start the embedded local chain (see aether devnet --help)", add_help=False)

    rep = sub.add_parser("report", help="summarise a run directory (exit 2 when a file in it cannot be read)")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--html", type=Path, default=None, help="also write a self-contained HTML page here")

    roll = sub.add_parser("rollout", help="rollout stage gates")
    roll_sub = roll.add_subparsers(dest="rollout_command", required=True)
    check = roll_sub.add_parser(
        "check", help="check the runbook's gate into a stage",
        description="Exit 0: the gate is met; 1: a criterion fails; 2: a directory or file cannot be evidence "
                    "(named, one line each). Each run counts once, however often or however it is named.")
    check.add_argument("--stage", required=True, choices=[s.value for s in Stage])
    check.add_argument("dirs", type=Path, nargs="+", metavar="DIR", help="run directories (reports/*_mempool_*)")

    prep = sub.add_parser("prepare", help="approve WETH and the configured tokens to every configured router")
    prep.add_argument("--yes", action="store_true", help="send the approvals (without it: only list what is missing)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["devnet"]:
        from .devnet import devnet_main

        return devnet_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "run":
        from .run import run_main

        return run_main(duration_s=args.duration)
    if args.command == "report":
        from .report import report_main

        return report_main(args.dir, html=args.html)
    if args.command == "rollout":
        from .report import rollout_check_main

        return rollout_check_main(args.stage, args.dirs)
    if args.command == "prepare":
        from .prepare import prepare_main

        return prepare_main(send=args.yes)
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
