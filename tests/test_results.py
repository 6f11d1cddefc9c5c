"""wsrl summary / wsrl plot on hand-written run directories."""

import json

import numpy as np
import pytest

from wsrl import cli
from wsrl.errors import WsrlError
from wsrl.plot import mean_band, plot_runs, unlearning_dips
from wsrl.summary import find_runs, format_table, group_runs, iqm, load_records, summarize


def write_run(path, method, seed, scores, pretrain_run=None, extra=None):
    path.mkdir(parents=True)
    config = {"kind": "finetune", "task": "t", "method": method, "seed": seed, "pretrain_run": pretrain_run,
              "pretrain_steps": 100 if pretrain_run else None}
    (path / "config.json").write_text(json.dumps(config))
    lines = [json.dumps({"step": s, "phase": "finetune", "score": v, **(extra or {})}) for s, v in scores]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def runs(tmp_path):
    pre = tmp_path / "pre"
    pre.mkdir()
    (pre / "metrics.jsonl").write_text(json.dumps({"step": 100, "phase": "pretrain", "score": 40.0}) + "\n")
    return [
        write_run(tmp_path / "a" / "s0", "wsrl", 0, [(0, 50.0), (10, 20.0), (100, 80.0)], str(pre),
                  {"q_offline": -1.0, "q_online": -2.0}),
        write_run(tmp_path / "a" / "s1", "wsrl", 1, [(0, 30.0), (100, 60.0)], str(pre),
                  {"q_offline": -3.0, "q_online": -4.0}),
        write_run(tmp_path / "b" / "s0", "calql-ft", 0, [(0, 50.0), (100, 10.0)]),
    ]


def test_find_runs_walks_folders(tmp_path, runs):
    assert find_runs([tmp_path]) == sorted(runs)


def test_mean_and_standard_error_across_seeds(runs):
    rows = {r["method"]: r for r in summarize(runs)}
    # finals 80 and 60: mean 70, sd 14.142, se 10
    assert rows["wsrl"]["final"] == pytest.approx(70.0) and rows["wsrl"]["final_se"] == pytest.approx(10.0)
    assert rows["wsrl"]["best"] == pytest.approx(70.0) and rows["wsrl"]["pretrained"] == pytest.approx(40.0)
    assert rows["wsrl"]["seeds"] == 2 and rows["calql-ft"]["final_se"] == 0.0
    table = format_table(list(rows.values()))
    assert "70.0 ± 10.0" in table and "wsrl 70.0 (n=2)" in table


def test_curves_are_aligned_on_the_union_of_steps(runs):
    curves = [(np.array([0.0, 10, 100]), np.array([50.0, 20, 80])), (np.array([0.0, 100]), np.array([30.0, 60]))]
    steps, mean, se = mean_band(curves)
    # seed 1 interpolated at step 10: 30 + 0.1 * 30 = 33 -> mean (20 + 33) / 2
    assert steps.tolist() == [0, 10, 100] and mean.tolist() == pytest.approx([40.0, 26.5, 70.0])
    assert se[0] == pytest.approx(10.0)


def test_iqm_trims_a_quarter_from_each_end():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert iqm([10, 1, 2, 3, 4]) == pytest.approx(3.0)  # floor(1.25) = 1 dropped from each end
    assert iqm([5.0]) == 5.0


def test_unlearning_dip(runs):
    dips = unlearning_dips(group_runs(runs))
    assert dips[("t", "wsrl")] == pytest.approx(15.0)  # seed 0: 50 - 20; seed 1: 30 - 30


def test_plot_writes_png_and_svg(tmp_path, runs):
    paths = plot_runs(runs, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == ["diagnostics-t.png", "diagnostics-t.svg", "scores.png", "scores.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert (tmp_path / "plots" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cut_last_line_is_ignored_but_a_bad_middle_line_is_an_error(tmp_path):
    run = write_run(tmp_path / "r", "wsrl", 0, [(0, 1.0), (1, 2.0)])
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 2, "sco')
    assert [r["step"] for r in load_records(run)] == [0, 1]
    (run / "metrics.jsonl").write_text('{"step": 0, "score": 1}\nnot json\n{"step": 1, "score": 2}\n')
    with pytest.raises(WsrlError, match="metrics.jsonl, line 2"):
        load_records(run)


def test_summary_command(tmp_path, runs, capsys):
    assert cli.main(["summary", str(tmp_path)]) == 0
    assert "calql-ft" in capsys.readouterr().out
    assert cli.main(["summary", str(tmp_path / "nothing")]) == 2


def test_two_runs_of_one_seed_are_refused(tmp_path):
    write_run(tmp_path / "a", "wsrl", 0, [(0, 10.0)])
    write_run(tmp_path / "b", "wsrl", 0, [(0, 30.0)])
    with pytest.raises(WsrlError, match="both seed 0 of wsrl on t"):
        summarize([tmp_path / "a", tmp_path / "b"])
