"""The sign-off cannot be fooled: aliased, repeated and copied run directories, and hostile files.

A verdict is compared with the verdict on the honest input: naming a run twice
(through any spelling), or a backup copy of it, must not move it. Every
malformed file is exit 2 with one line naming it, never a pass and never a
traceback; hypothesis feeds random JSON shapes to every loader.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether.cli import main as cli_main
from aether.report import check_stage, load_runs, report_main, rollout_check_main
from aether.report._load import MAX_BUNDLE_BYTES, MAX_META_BYTES

from test_report import DAY0, bundle, live_week, make_run, week_of_runs


def verdict(capsys: pytest.CaptureFixture[str], stage: str, dirs: list[Path]) -> tuple[int, list[str]]:
    """Exit code and each criterion's verdict and name (what a repeated run must not move)."""
    code = rollout_check_main(stage, dirs)
    out = capsys.readouterr().out
    return code, [line.split(":")[0] for line in out.splitlines() if line.startswith(("  [PASS]", "  [FAIL]"))]


def spellings(run: Path, cwd: Path) -> list[Path]:
    """The same directory through several paths (cwd is the runs' parent)."""
    link = cwd / f"link-{run.name}"
    if not link.exists():
        link.symlink_to(run)
    return [Path(".") / run.name, Path(f"{run.name}/"), run.resolve(), link, Path(run.name) / ".." / run.name,
            Path(f"./{run.name}/./bundles/..")]


# --------------------------------------------------------------------------- each run once


def test_a_short_week_named_many_times_stays_short(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs = week_of_runs(tmp_path, 5, 6)  # 5 a day for 6 days: fails two criteria
    assert rollout_check_main("B", runs) == 1
    honest_lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(("  [PASS]", "  [FAIL]"))]
    assert [ln.split(":")[0] for ln in honest_lines if ln.startswith("  [FAIL]")] == [
        "  [FAIL] shadow runs span the runbook's week",
        "  [FAIL] mempool backruns built per whole UTC day with non-zero predicted net profit"]
    aliased = [p for r in runs for p in spellings(r, tmp_path)]
    code = rollout_check_main("B", aliased)
    out = capsys.readouterr().out
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith(("  [PASS]", "  [FAIL]"))] == honest_lines
    assert "gate into Stage B over 6 run(s)" in out
    assert out.count("named 6 times") == 6 and "counted once" in out


def test_a_met_gate_is_unchanged_by_aliases_in_any_order(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs = week_of_runs(tmp_path, 10, 7)
    honest = verdict(capsys, "B", runs)
    assert honest[0] == 0
    aliased = [p for r in reversed(runs) for p in spellings(r, tmp_path)]
    assert verdict(capsys, "B", aliased) == honest


def test_a_backup_copy_is_counted_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path / "reports", 5, 7)  # 5 a day: NOT met
    honest = verdict(capsys, "B", runs)
    backup = tmp_path / "backup"
    copies = [Path(shutil.copytree(r, backup / r.name)) for r in runs]
    code = rollout_check_main("B", [*runs, *copies])
    out = capsys.readouterr().out
    assert (code, [ln.split(":")[0] for ln in out.splitlines() if ln.startswith(("  [PASS]", "  [FAIL]"))]) == honest
    assert out.count("a copy of") == 7 and "min 5/day" in out and "over 7 run(s)" in out


def test_a_copy_with_a_new_run_id_is_caught_by_its_arb_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path / "reports", 5, 7)
    honest = verdict(capsys, "B", runs)
    copies = []
    for i, r in enumerate(runs):
        c = Path(shutil.copytree(r, tmp_path / "forged" / r.name))
        meta = json.loads((c / "run.json").read_text())
        meta["run_id"] = f"{i:032x}"  # edited so the copy looks like another run
        (c / "run.json").write_text(json.dumps(meta))
        copies.append(c)
    code = rollout_check_main("B", [*runs, *copies])
    out = capsys.readouterr().out
    assert (code, [ln.split(":")[0] for ln in out.splitlines() if ln.startswith(("  [PASS]", "  [FAIL]"))]) == honest
    assert "min 5/day" in out  # every arb_id counted once: still 5 a day
    assert "35 arb_id(s) appear in more than one run directory" in out


def test_a_copy_with_renamed_arb_ids_is_caught_by_its_signed_transactions(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path / "reports", 5, 7)
    honest = verdict(capsys, "B", runs)
    copies = []
    for i, r in enumerate(runs):
        c = Path(shutil.copytree(r, tmp_path / "forged" / r.name))
        meta = json.loads((c / "run.json").read_text())
        meta["run_id"] = f"{i:032x}"
        (c / "run.json").write_text(json.dumps(meta))
        for f in list((c / "bundles").iterdir()):
            doc = json.loads(f.read_text())
            doc["arb_id"] = "forged-" + doc["arb_id"]
            (c / "bundles" / f"{doc['arb_id']}.json").write_text(json.dumps(doc))
            f.unlink()
        copies.append(c)
    code = rollout_check_main("B", [*runs, *copies])
    out = capsys.readouterr().out
    assert (code, [ln.split(":")[0] for ln in out.splitlines() if ln.startswith(("  [PASS]", "  [FAIL]"))]) == honest
    assert "min 5/day" in out and "35 dump(s) carry the signed transactions of another arb_id" in out


def test_a_dump_dated_outside_its_run_is_not_counted(tmp_path: Path) -> None:
    runs = week_of_runs(tmp_path, 10, 7)
    # Five more dumps in day 0's run, dated on day 3: moved evidence, not day 3's backruns.
    for i in range(5):
        b = bundle(f"moved{i}", DAY0 + dt.timedelta(days=3, hours=1))
        (runs[0] / "bundles" / f"moved{i}.json").write_text(json.dumps(b))
    for f in sorted((runs[3] / "bundles").iterdir())[:5]:
        f.unlink()
    result = check_stage("B", load_runs(runs).runs)
    [c] = [c for c in result.criteria if not c.met]
    assert c.measured.startswith("min 5/day") and "5 dump(s) dated outside their run not counted" in c.measured


def test_a_copy_of_a_live_run_adds_no_inclusion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = live_week(tmp_path / "reports", [(100, 100), (100, 100)])  # two inclusions: not met
    honest = verdict(capsys, "C", [run])
    copy = Path(shutil.copytree(run, tmp_path / "copy" / run.name))
    assert verdict(capsys, "C", [run, copy]) == honest
    meta = json.loads((copy / "run.json").read_text())
    meta["run_id"] = "0" * 32
    (copy / "run.json").write_text(json.dumps(meta))
    assert verdict(capsys, "C", [run, copy]) == honest
    assert rollout_check_main("C", [run, copy]) == 1
    assert "[FAIL] inclusions: 2 " in capsys.readouterr().out


def test_a_copy_that_differs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [run] = week_of_runs(tmp_path / "reports", 10, 1)
    copy = Path(shutil.copytree(run, tmp_path / "partial" / run.name))
    next((copy / "bundles").iterdir()).unlink()
    assert rollout_check_main("B", [run, copy]) == 2
    err = capsys.readouterr().err
    assert "has the run identity run_id:" in err and "name only one of them" in err
    assert str(copy.resolve()) in err and str(run.resolve()) in err


def test_a_parent_and_its_child_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [run] = week_of_runs(tmp_path, 10, 1)
    nested = Path(shutil.copytree(run, run / "old" / run.name))
    assert rollout_check_main("B", [run, nested]) == 2
    assert "overlapping directories" in capsys.readouterr().err


def test_duplicate_arb_ids_inside_one_run_are_twins_not_bundles(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    runs = week_of_runs(tmp_path, 5, 7)
    for r in runs:  # every dump written again as a dedup twin <arb_id>-2.json
        for f in list((r / "bundles").iterdir()):
            shutil.copy(f, f.with_name(f.stem + "-2.json"))
    result = check_stage("B", load_runs(runs).runs)
    assert not result.met
    assert report_main(runs[0]) == 0
    assert "bundles built          5  (0.2/h)  + 5 dedup twin(s) of the same arb_id" in capsys.readouterr().out


# --------------------------------------------------------------------------- malformed files


def _bad_bundle(run: Path, content: Any) -> Path:
    f = run / "bundles" / "bad.json"
    f.write_text(json.dumps(content) if not isinstance(content, str) else content)
    return f


def _good() -> dict[str, Any]:
    return bundle("good", DAY0)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda r: _bad_bundle(r, {**_good(), "expected_net_profit_wei": 1.5}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "expected_net_profit_wei": 1e3}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "expected_gross_profit_wei": True}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "expected_gross_profit_wei": "1e3"}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "expected_gross_profit_wei": " 12"}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "expected_gross_profit_wei": "9" * 81}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "base_fee_wei": 2.0}), "not an integer amount"),
        (lambda r: _bad_bundle(r, {**_good(), "target_block": "5"}), "not an integer"),
        (lambda r: _bad_bundle(r, {**_good(), "target_block": True}), "not an integer"),
        (lambda r: _bad_bundle(r, {**_good(), "source": "evil"}), "is not one of"),
        (lambda r: _bad_bundle(r, {**_good(), "arb_id": 7}), "not a non-empty string"),
        (lambda r: _bad_bundle(r, {**_good(), "built_at": "yesterday"}), "not an ISO-8601 time"),
        (lambda r: _bad_bundle(r, {**_good(), "built_at": "2026-05-10T12:00:00"}), "has no UTC offset"),
        (lambda r: _bad_bundle(r, {**_good(), "built_at": "0001-01-01T00:00:00Z"}), "outside the years"),
        (lambda r: _bad_bundle(r, {**_good(), "built_at": "9999-12-31T23:59:59-23:59"}), "outside the years"),
        (lambda r: (r / "run.json").write_text(json.dumps({"mode": "shadow", "started_at": "00010101T000000Z"})),
         "outside the years"),
        (lambda r: (r / "summary.json").write_text(json.dumps({"panics": 0, "updated_unix": 10**15})),
         "summary.updated_unix"),
        (lambda r: (r / "summary.json").write_text(json.dumps({"panics": 2**64})), "summary.panics"),
        (lambda r: _bad_bundle(r, {**_good(), "risk_decisions": [{"gate": "x", "passed": "yes", "value": ""}]}),
         "not true or false"),
        (lambda r: _bad_bundle(r, {**_good(), "risk_decisions": {}}), "expected a list"),
        (lambda r: _bad_bundle(r, {**_good(), "envelope": "0x02"}), "0x-hex strings"),
        (lambda r: _bad_bundle(r, {**_good(), "tip_share_bps": 10001}), "over 10000"),
        (lambda r: _bad_bundle(r, [1, 2]), "expected a JSON object, got list"),
        (lambda r: _bad_bundle(r, _good()), "file name does not match its arb_id 'good'"),
        (lambda r: _bad_bundle(r, '{"arb_id": NaN}'), "holds NaN, which is not JSON"),
        (lambda r: _bad_bundle(r, '{"arb_id": "x", '), "not JSON"),
        (lambda r: _bad_bundle(r, "[" * 100_000 + "]" * 100_000), "nested too deeply"),
        (lambda r: (r / "bundles" / "bad.json").write_bytes(b'{"arb_id": "\xff"}'), "not UTF-8"),
        (lambda r: (r / "summary.json").write_text(json.dumps({"panics": "0"})), "summary.panics"),
        (lambda r: (r / "summary.json").write_text(json.dumps({"panics": 0, "sources": {"m": {"submitted": 1.0}}})),
         "summary.sources.m.submitted"),
        (lambda r: (r / "summary.json").write_text(json.dumps({"panics": 0, "risk": {"halts_seen": "daily_pnl"}})),
         "summary.risk.halts_seen"),
        (lambda r: (r / "run.json").write_text(json.dumps({"mode": "Shadow"})), "neither shadow nor live"),
        (lambda r: (r / "run.json").write_text(json.dumps({"mode": "shadow", "mempool_tracking": 1})),
         "not true or false"),
        (lambda r: (r / "run.json").write_text(json.dumps({"mode": "shadow", "limits": {"min_profit_wei": 5e16}})),
         "not an integer amount"),
        (lambda r: (r / "run.json").write_text(json.dumps({"mode": "shadow", "started_at": "2026-05-10"})),
         "not a UTC stamp"),
        (lambda r: (r / "inclusions.jsonl").write_text('{"arb_id": "a", "included": 1, "predicted_profit_wei": "1",'
                                                       ' "realised_profit_wei": "1"}\n'), "not true or false"),
        (lambda r: (r / "inclusions.jsonl").write_text('{"arb_id": "a", "included": true, "predicted_profit_wei": '
                                                       '0.5, "realised_profit_wei": "1"}\n'), "not an integer amount"),
        (lambda r: (r / "inclusions.jsonl").write_text("[]\nnot json\n"), "not JSON"),
    ],
)
def test_malformed_content_is_a_named_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any,
                                            reason: str) -> None:
    [run] = week_of_runs(tmp_path, 10, 1)
    make(run)
    for stage in ("B", "C"):
        assert rollout_check_main(stage, [run]) == 2
        err = capsys.readouterr().err
        assert reason in err and str(run) in err and "Traceback" not in err, err
    assert report_main(run) == 2
    assert reason in capsys.readouterr().err


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _socket(p: Path) -> None:
    here = os.getcwd()
    os.chdir(p.parent)  # a relative name: tmp paths can be longer than sun_path
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(p.name)
        s.close()
    finally:
        os.chdir(here)


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("bundles/f.json", _fifo, "is a FIFO, not a regular file"),
        ("run.json", lambda p: (p.unlink(), _fifo(p)), "is a FIFO, not a regular file"),
        ("summary.json", lambda p: (p.unlink(), _fifo(p)), "is a FIFO, not a regular file"),
        ("inclusions.jsonl", _fifo, "is a FIFO, not a regular file"),
        ("bundles/s.json", _socket, "cannot open it"),
        ("bundles/z.json", lambda p: p.symlink_to("/dev/zero"), "is a symlink"),
        ("summary.json", lambda p: (p.unlink(), p.symlink_to("/dev/urandom")), "is a symlink"),
        ("bundles/other.json", lambda p: p.symlink_to(p.parent / "d0b0.json"), "is a symlink"),
        ("bundles/big.json", lambda p: os.truncate(p.touch() or p, MAX_BUNDLE_BYTES + 1),
         f"over the cap of {MAX_BUNDLE_BYTES}"),
        ("summary.json", lambda p: os.truncate(p, MAX_META_BYTES + 1), f"over the cap of {MAX_META_BYTES}"),
        ("bundles/d.json", lambda p: p.mkdir(), "is a directory, not a regular file"),
        ("run.json", lambda p: (p.unlink(), p.mkdir()), "is a directory, not a regular file"),
        ("bundles", lambda p: (shutil.rmtree(p), p.write_text("{}")), "not a directory"),
        ("bundles", lambda p: (shutil.rmtree(p), p.symlink_to("/dev")), "is a symlink, not a directory"),
    ],
)
def test_special_and_huge_files_are_named_errors_and_never_block(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 name: str, make: Any, reason: str) -> None:
    [run] = week_of_runs(tmp_path, 10, 1)
    make(run / name)
    assert cli_main(["rollout", "check", "--stage", "B", str(run)]) == 2
    err = capsys.readouterr().err
    assert reason in err and str(run / name) in err and "Traceback" not in err, err
    assert all(line.startswith("aether rollout check: ") for line in err.splitlines())


def test_a_risk_state_file_that_is_a_fifo_is_named_not_waited_on(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = live_week(tmp_path, [(100, 100)] * 3)
    meta = json.loads((run / "run.json").read_text())
    meta["state_file"] = str(tmp_path / "state.fifo")
    os.mkfifo(tmp_path / "state.fifo")
    (run / "run.json").write_text(json.dumps(meta))
    assert rollout_check_main("C", [run]) == 2
    assert "state.fifo (risk state file named by" in capsys.readouterr().err


def test_every_problem_is_listed_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [run] = week_of_runs(tmp_path, 10, 1)
    for i in range(3):
        (run / "bundles" / f"bad{i}.json").write_text("{")
    (run / "bundles" / "new\nline.json").write_text("{")
    assert rollout_check_main("B", [run]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all("not JSON" in line for line in err)
    assert any("new\\nline.json" in line for line in err)


# --------------------------------------------------------------------------- random shapes

#: Values at the edges of what the loaders convert: times, huge and negative numbers, near-amounts.
TRICKY = st.sampled_from([
    0, -1, 2**63, -(2**63), 10**40, 1e308, -0.0, "", "0", "-0", "1e3", "0x10", "９", "1" * 81,
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "2026-05-10T12:00:00Z", "20260510T000000Z",
    "00010101T000000Z", "live", "shadow", "mempool_backrun", "daily_pnl", [], {}, {"daily_pnl": "-1"},
])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | TRICKY,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def _mutate(doc: dict[str, Any], keys: list[str], values: list[Any]) -> dict[str, Any]:
    out = dict(doc)
    for k, v in zip(keys, values, strict=False):
        out[k] = v
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["run.json", "summary.json", "bundles/r.json", "inclusions.jsonl"]),
       whole=st.booleans(), doc=JSON, keys=st.lists(st.text(max_size=30), max_size=3),
       values=st.lists(JSON, max_size=3), stage=st.sampled_from(["B", "C"]))
def test_random_json_shapes_never_traceback(tmp_path_factory: pytest.TempPathFactory,
                                            capsys: pytest.CaptureFixture[str], where: str, whole: bool, doc: Any,
                                            keys: list[str], values: list[Any], stage: str) -> None:
    root = tmp_path_factory.mktemp("h")
    run = live_week(root, [(100, 100)] * 3) if stage == "C" else week_of_runs(root, 10, 1)[0]
    if where == "bundles/r.json":
        base: Any = bundle("r", DAY0)
    elif where == "inclusions.jsonl":
        base = {"arb_id": "x0", "included": True, "predicted_profit_wei": "100", "realised_profit_wei": "100"}
    else:
        base = json.loads((run / where).read_text())
    keys = keys + [k for k in list(base)[:3]]
    content = doc if whole else _mutate(base, keys[len(keys) - len(values):], values)
    text = json.dumps(content)
    (run / where).write_text(text + ("\n" if where.endswith("jsonl") else ""))
    for code in (rollout_check_main(stage, [run]), report_main(run)):
        assert code in (0, 1, 2)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert "internal error" not in captured.err and "unreadable as evidence" not in captured.err  # guards for bugs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["run.json", "summary.json", "bundles/r.json", "inclusions.jsonl"]),
       data=st.binary(max_size=200))
def test_random_bytes_never_traceback(tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
                                      where: str, data: bytes) -> None:
    [run] = week_of_runs(tmp_path_factory.mktemp("b"), 10, 1)
    (run / where).write_bytes(data)
    assert rollout_check_main("B", [run]) in (0, 1, 2)
    assert report_main(run) in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err and "unreadable as evidence" not in err


def test_the_console_script_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    [run] = week_of_runs(tmp_path, 10, 1)
    (run / "bundles" / "x.json").write_text('{"arb_id": 1.5}')
    os.mkfifo(run / "bundles" / "p.json")
    res = subprocess.run([sys.executable, "-m", "aether.cli", "rollout", "check", "--stage", "B", str(run)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in res.stderr
    assert "p.json: is a FIFO" in res.stderr and "x.json: missing field envelope" in res.stderr
    _ = make_run  # the shared fixture builder (imported for readers looking for the shapes)


def test_the_first_dump_of_an_arb_id_wins_over_its_dedup_twin(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``<id>-2.json`` sorts before ``<id>.json``; the report must still keep the bundle that passed."""
    from aether.dumps import RunDir
    from aether.messages import RiskDecision, Verdict
    from aether.report import load_run, report_main
    from aether.report._rollout import unique_bundles
    from factories import make_bundle

    run = RunDir(tmp_path, shadow=True)
    run.create()
    b = make_bundle()
    first = run.write_bundle(Verdict(b, (RiskDecision("dedup", True, "0"),), True, None), outcome="shadow_blocked")
    twin = run.write_bundle(Verdict(b, (RiskDecision("dedup", False, "1"),), False, "dedup"), outcome="rejected")
    assert (first.name, twin.name) == (f"{b.arb_id}.json", f"{b.arb_id}-2.json")
    kept = [x for _r, x in unique_bundles([load_run(run.path)])]
    assert [(x.outcome, x.rejected_reason) for x in kept] == [("shadow_blocked", None)]
    assert report_main(run.path) == 0
