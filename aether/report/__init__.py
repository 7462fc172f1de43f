"""``aether report DIR`` and ``aether rollout check --stage B|C DIR...``.

Both read run directories as ``aether run`` leaves them:

    <run>/run.json            start-up facts (mode, settings, run_id, risk state file)
    <run>/summary.json        counters and the risk record (every 15 s and at a clean stop)
    <run>/bundles/*.json      one forensic dump per built bundle
    <run>/inclusions.jsonl    live mode: one line per submitted bundle's outcome
    <run>/settlements.jsonl   one line per bundle that passed risk: its settled outcome

Reading (:mod:`._load`) is strict and counts each run once; a malformed or
inconsistent input is exit 2 with one line per problem naming the file, never a
pass and never a traceback. The report (:mod:`._report`) is a list of sections;
the stage checks (:mod:`._rollout`) exit 0 when met and 1 when not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from ._load import LoadResult, Note, Problem, RunData, RunDirError, load_run, load_runs
from ._report import SECTIONS, Section, fmt_eth, render_html, render_text
from ._rollout import Criterion, Stage, StageCheck, check_stage
from ._settlement import SettlementFileError, load_settlements, render_settlement_html, render_settlement_text

__all__ = [
    "SECTIONS",
    "Criterion",
    "LoadResult",
    "Note",
    "Problem",
    "RunData",
    "RunDirError",
    "Section",
    "Stage",
    "StageCheck",
    "check_stage",
    "fmt_eth",
    "load_run",
    "load_runs",
    "render_html",
    "render_text",
    "report_main",
    "rollout_check_main",
]

#: Problems printed before the rest are only counted (a directory of a million bad files).
MAX_PROBLEM_LINES = 200


def _print_problems(prog: str, exc: RunDirError) -> int:
    for p in exc.problems[:MAX_PROBLEM_LINES]:
        print(f"{prog}: {_one_line(str(p))}", file=sys.stderr)
    if len(exc.problems) > MAX_PROBLEM_LINES:
        print(f"{prog}: ... and {len(exc.problems) - MAX_PROBLEM_LINES} more problem(s)", file=sys.stderr)
    return 2


def _one_line(text: str) -> str:
    """File names and values can hold newlines or escapes; the terminal gets one printable line."""
    return text.encode("unicode_escape", "backslashreplace").decode("ascii") if not text.isprintable() else text


def report_main(path: Path, *, html: Path | None = None) -> int:
    """``aether report DIR``: 0 with the report on stdout, 2 when the directory cannot be read."""
    try:
        loaded = load_runs([path])
        run = loaded.runs[0]
        settled = load_settlements(run.path)
        text = render_text(run, loaded.notes) + render_settlement_text(settled)
        page = None if html is None else render_html(run, loaded.notes) + render_settlement_html(settled) + "\n"
    except RunDirError as exc:
        return _print_problems("aether report", exc)
    except SettlementFileError as exc:
        print(f"aether report: {_one_line(str(exc))[:2000]}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - as in rollout_check_main
        print(f"aether report: internal error ({type(exc).__name__}: {_one_line(str(exc))[:200]}); please report it",
              file=sys.stderr)
        return 2
    sys.stdout.write(text)
    if html is not None and page is not None:
        try:
            html.write_text(page)
        except OSError as exc:
            print(f"aether report: {html}: cannot write the HTML page ({exc.strerror or type(exc).__name__})",
                  file=sys.stderr)
            return 2
        print(f"html report: {html}")
    return 0


def rollout_check_main(stage: str, dirs: Sequence[Path]) -> int:
    """``aether rollout check``: 0 when the gate is met, 1 when not, 2 when the input cannot be evidence."""
    try:
        loaded = load_runs(dirs)
        result = check_stage(stage, loaded.runs)
    except RunDirError as exc:
        return _print_problems("aether rollout check", exc)
    except SettlementFileError as exc:
        print(f"aether rollout check: {_one_line(str(exc))[:2000]}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug must not print a traceback or pass: exit 2, named
        print(f"aether rollout check: internal error ({type(exc).__name__}: {_one_line(str(exc))[:200]}); "
              "the gate is not met; please report it", file=sys.stderr)
        return 2
    print(f"gate into Stage {result.stage} over {len(loaded.runs)} run(s):")
    for note in loaded.notes:
        print(f"  [NOTE] {_one_line(note.text)}")
    for c in result.criteria:
        print(f"  [{'PASS' if c.met else 'FAIL'}] {c.name}: {_one_line(c.measured)} (required {c.required})")
    print(f"Stage {result.stage} gate {'MET' if result.met else 'NOT MET'}")
    return 0 if result.met else 1
