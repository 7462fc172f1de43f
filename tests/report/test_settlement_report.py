"""The settlement part of `aether report` and `rollout check --stage B`, on synthetic rows with exact expectations."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest

from aether.report._settlement import (
    SettlementFileError,
    load_settlements,
    render_settlement_html,
    stage_b_settlement_criteria,
    summarise_settlements,
)
from aether.report import check_stage, load_run, report_main
from aether.settlement import Settlement, SettlementOutcome, Winner

from factories import make_bundle
from test_report import bundle as _bundle, make_run

O = SettlementOutcome


def rows() -> list[dict[str, Any]]:
    out = []
    b = make_bundle(target_block=100, net=10**16)
    win = Winner(tx_hash="0x" + "ab" * 32, sender="0x" + "cd" * 20, tx_index=1, priority_fee_wei=5,
                 coinbase_payment_wei=6 * 10**15, earned_wei=3 * 10**15, gross_wei=10**16)
    leg = attrs.evolve(win, tx_hash="0x" + "ac" * 32, coinbase_payment_wei=10**15, gross_wei=-2 * 10**15)
    specs = [
        (O.WOULD_HAVE_WON, {"counterfactual_net_wei": 10**16}),
        (O.WOULD_HAVE_WON, {"counterfactual_net_wei": 10**16}),
        (O.WOULD_HAVE_WON, {"counterfactual_net_wei": 10**16 - 7}),
        (O.LOST_TO_COMPETITOR, {"counterfactual_net_wei": 10**16, "winners": (leg, win)}),
        (O.STATE_MOVED_BEFORE_VICTIM, {"counterfactual_net_wei": 4 * 10**15}),
        (O.STATE_MOVED_BEFORE_VICTIM, {}),
        (O.VICTIM_NOT_INCLUDED, {}),
        (O.UNKNOWN, {"reason": "stopped"}),
    ]
    for i, (o, kw) in enumerate(specs):
        bi = attrs.evolve(b, arb_id=f"s{i}", target_block=100 + i)
        out.append(Settlement(bundle=bi, outcome=o, **kw).record(settled_at_head=101 + i))
    return out


class Svg(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs_)))


def test_summary_counts_every_outcome_and_the_errors_exactly() -> None:
    s = summarise_settlements(rows())
    assert s["totals"] == {"included": 0, "victim_not_included": 1, "state_moved_before_victim": 2,
                           "lost_to_competitor": 1, "would_have_won": 3, "unknown": 1}
    assert s["would_have_won_rate"] == 3 / 8
    assert s["counterfactual_exact"] == 2 and s["counterfactual_error_wei"]["min"] == -7
    assert s["state_moved_change_wei"]["n"] == 1 and s["state_moved_change_wei"]["p50"] == -6 * 10**15
    assert s["state_moved_reverts"] == 1
    # Two legs of one winner: paid 7e15 together for a gap of 8e15 WETH: 8750 bps.
    assert s["winners_tip_share_bps"]["p50"] == 7 * 10**15 * 10_000 // (8 * 10**15)
    assert s["winners_payment_wei"] == 7 * 10**15
    assert s["unknown_reasons"] == {"stopped": 1}


def test_report_shows_the_mix_and_the_html_charts_parse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z")])
    (run / "settlements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    assert report_main(run, html=tmp_path / "r.html") == 0
    out = capsys.readouterr().out
    assert "[settlement]  8 bundles settled" in out
    assert "would-have-won rate       37.5%" in out
    assert "2 of 3 exact to the wei" in out  # would_have_won and included only
    page = (tmp_path / "r.html").read_text()
    for banned in ("<script", "src=", "href=", "http://", "https://", "url("):
        assert banned not in page
    p = Svg()
    p.feed(page)
    mix = [a for t, a in p.tags if t == "rect" and a.get("class") == "mix"]
    assert sum(int(a["data-count"] or 0) for a in mix) == 8
    assert {a["data-outcome"] for a in mix} == {str(o) for o in O if o is not O.INCLUDED}
    dots = {a["data-arb-id"]: (int(a["data-predicted"] or 0), int(a["data-counterfactual"] or 0))
            for t, a in p.tags if t == "circle"}
    assert dots["s2"] == (10**16, 10**16 - 7) and "s5" not in dots and len(dots) == 5
    tips = [a for t, a in p.tags if t == "rect" and a.get("class") == "tip"]
    assert [int(a["data-count"] or 0) for a in tips if a["data-bin-bps"] == "8000"] == [1]


def test_corrupt_settlements_are_named_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z")])
    good = json.dumps(rows()[0])
    (run / "settlements.jsonl").write_text(good + "\n{not json\n" + json.dumps({**rows()[0], "outcome": "won"}) + "\n")
    with pytest.raises(SettlementFileError, match=r"settlements.jsonl:2: .*settlements.jsonl:3"):
        load_settlements(run)
    assert report_main(run) == 2
    assert "settlements.jsonl" in capsys.readouterr().err


def test_stage_b_reports_the_would_have_won_rate_and_error(tmp_path: Path) -> None:
    run = make_run(tmp_path, "shadow_mempool_20260510T000000Z", [_bundle("a", "2026-05-10T12:00:00Z")])
    (run / "settlements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    check = check_stage("B", [load_run(run)])
    by_name = {c.name: c for c in check.criteria}
    assert by_name["would-have-won rate"].measured.startswith("3 of 8 settled (37.5%)")
    assert by_name["counterfactual error (would_have_won)"].measured.startswith("2 of 3 exact")
    assert stage_b_settlement_criteria([[]])[0][1] == "no settlements.jsonl rows"
    assert render_settlement_html([]).startswith("<h2>settlement</h2>")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"counterfactual_net_wei": 1.5e16}, "not an integer amount"),
        ({"predicted_net_wei": True}, "not an integer amount"),
        ({"error_wei": "1e3"}, "not an integer amount"),
        ({"target_block": "100"}, "target_block"),
        ({"arb_id": 7}, "not a settlement row"),
    ],
)
def test_settlement_amounts_are_exact_integers_or_exit_2(tmp_path: Path, change: dict[str, Any], why: str) -> None:
    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z")])
    (run / "settlements.jsonl").write_text(json.dumps({**rows()[0], **change}) + "\n")
    with pytest.raises(SettlementFileError, match=why):
        load_settlements(run)
    assert report_main(run) == 2


def test_a_bundle_settled_twice_is_corrupt_evidence(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z")])
    line = json.dumps(rows()[0]) + "\n"
    (run / "settlements.jsonl").write_text(line + line)
    with pytest.raises(SettlementFileError, match="settled twice"):
        load_settlements(run)


def test_a_fifo_or_symlink_settlements_file_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    run = make_run(tmp_path, "r", [_bundle("a", "2026-05-10T12:00:00Z")])
    os.mkfifo(run / "settlements.jsonl")
    with pytest.raises(SettlementFileError, match="not a regular file"):
        load_settlements(run)
    (run / "settlements.jsonl").unlink()
    (run / "settlements.jsonl").symlink_to("/dev/zero")
    with pytest.raises(SettlementFileError, match="symlink"):
        load_settlements(run)


def test_every_inexact_win_is_counted_by_its_measured_cause() -> None:
    from aether.report._settlement import render_settlement_text
    from aether.settlement import Deviation

    b = make_bundle(target_block=100, net=10**16)
    specs = [(10**16, Deviation.NONE), (10**16 - 12_300, Deviation.GAS_AT_POSITION),
             (10**16 - 1, Deviation.GAS_AT_POSITION), (3 * 10**16, Deviation.VICTIM_REVERTED), (10**16 + 5, None)]
    rs = [Settlement(bundle=attrs.evolve(b, arb_id=f"d{i}"), outcome=O.WOULD_HAVE_WON, counterfactual_net_wei=net,
                     deviation=dev).record() for i, (net, dev) in enumerate(specs)]
    s = summarise_settlements(rs)
    assert s["counterfactual_exact"] == 1
    # A row without a measured cause (written before the baseline existed) is "unexplained", never hidden.
    assert s["counterfactual_deviations"] == {"gas_at_position": 2, "victim_reverted": 1, "unexplained": 1}
    assert "not exact, by measured cause: gas_at_position=2, victim_reverted=1, unexplained=1" in \
        render_settlement_text(rs)
