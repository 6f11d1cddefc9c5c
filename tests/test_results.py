"""wsrl summary / wsrl plot on hand-written run directories."""

import json

import numpy as np
import pytest

from wsrl import cli
from wsrl.errors import WsrlError
from wsrl import stats
from wsrl.plot import ablation_series, mean_band, plot_runs, pretrain_curves, unlearning_dips
from wsrl.summary import (aggregate, find_runs, format_table, group_runs, iqm, load_records, summarize,
                          write_summary)


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
    # two seeds: the bootstrap mean is 60, 70 or 80 (probabilities 1/4, 1/2, 1/4): the 95% interval is [60, 80]
    assert (rows["wsrl"]["final_low"], rows["wsrl"]["final_high"]) == (60.0, 80.0)
    assert (rows["wsrl"]["iqm"], rows["wsrl"]["iqm_low"], rows["wsrl"]["iqm_high"]) == (70.0, 60.0, 80.0)
    assert rows["wsrl"]["listed"] is None and rows["wsrl"]["missing"] == 0 and rows["wsrl"]["group"] == "wsrl"
    table = format_table(list(rows.values()))
    assert "70.0 [60.0, 80.0]" in table.splitlines()[2] and "across" not in table  # one task: no aggregate
    assert "a group with 1 seed has an interval of zero width" in table


def test_curves_are_aligned_on_the_union_of_steps(runs):
    curves = [(np.array([0.0, 10, 100]), np.array([50.0, 20, 80])), (np.array([0.0, 100]), np.array([30.0, 60]))]
    steps, mean, low, high = mean_band(curves)
    # seed 1 interpolated at step 10: 30 + 0.1 * 30 = 33 -> mean (20 + 33) / 2
    assert steps.tolist() == [0, 10, 100] and mean.tolist() == pytest.approx([40.0, 26.5, 70.0])
    # 95% band of the mean of two seeds: from the lower seed to the higher one at every step
    assert low.tolist() == pytest.approx([30.0, 20.0, 60.0]) and high.tolist() == pytest.approx([50.0, 33.0, 80.0])


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
    assert names == ["diagnostics-t.png", "diagnostics-t.svg", "scores.png", "scores.svg", "summary.json"]
    assert all(p.stat().st_size > 1000 for p in paths if p.suffix != ".json")
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


# ---- sweep roots --------------------------------------------------------------------------------------------

TASKS = {"maze": ("pointmaze-umaze-repeat4-v0", 60.0, 50.0), "pend": ("Pendulum-v1", 20.0, 10.0)}
LABELS = {"wsrl": 20.0, "calql-ft": 0.0}
WARMUP = {0: 0.0, 1000: 10.0}
SEED_OFFSET = [0.0, 6.0, 3.0]
MISSING = "pend/calql-ft/warmup_steps=1000/seed2"


def final_score(task, label, warmup, seed):
    return TASKS[task][1] + LABELS[label] + WARMUP[warmup] + SEED_OFFSET[seed]


def write_json_run(path, config, records):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def sweep(tmp_path):
    """A sweep root as `wsrl sweep` leaves it: 2 tasks x 2 labels x warmup_steps in (0, 1000) x 3 seeds, one
    shared pre-training per task and seed, one listed fine-tuning run never written. Each fine-tuning run
    scores the task's pre-trained score at step 0, final - 30 at step 500 and `final_score` at step 1000."""
    root = tmp_path / "sweep"
    runs = []
    for task, (task_id, _, pretrained) in TASKS.items():
        for label in LABELS:
            for warmup in WARMUP:
                for seed in range(3):
                    pre_dir = f"{task}/pretrain/cal-ql-1a2b3c4d/seed{seed}"
                    run_dir = f"{task}/{label}/warmup_steps={warmup}/seed{seed}"
                    runs.append({"kind": "finetune", "task": task, "label": label, "method": label,
                                 "variant": {"warmup_steps": warmup}, "seed": seed, "dir": run_dir,
                                 "pretrain_dir": pre_dir})
                    runs.append({"kind": "pretrain", "task": task, "label": "cal-ql", "method": None, "variant": {},
                                 "seed": seed, "dir": pre_dir, "pretrain_dir": None})
                    write_json_run(root / pre_dir, {"kind": "pretrain", "task": task_id, "method": "cal-ql",
                                                    "seed": seed, "pretrain_run": None, "pretrain_steps": 100},
                                   [{"step": 50, "phase": "pretrain", "score": 30.0},
                                    {"step": 100, "phase": "pretrain", "score": 50.0}])
                    if run_dir == MISSING:
                        continue
                    final = final_score(task, label, warmup, seed)
                    write_json_run(root / run_dir,
                                   {"kind": "finetune", "task": task_id, "method": label, "seed": seed,
                                    "pretrain_run": "/nowhere/else", "pretrain_steps": 100},
                                   [{"step": 0, "score": pretrained, "q_offline": -1.0},
                                    {"step": 500, "score": final - 30, "q_offline": -2.0},
                                    {"step": 1000, "score": final, "q_offline": -3.0}])
    unique = list({r["dir"]: r for r in runs}.values())
    (root / "sweep.json").write_text(json.dumps({"version": 1, "sweep_file": "/abs/sweep.toml",
                                                 "vary": {"warmup_steps": [0, 1000]}, "runs": unique}))
    return root


GROUPS = ["wsrl [warmup_steps=0]", "wsrl [warmup_steps=1000]", "calql-ft [warmup_steps=0]",
          "calql-ft [warmup_steps=1000]"]


def test_sweep_runs_are_grouped_by_the_manifests_task_label_and_variant(sweep):
    groups = group_runs(find_runs([sweep]))
    fine = [key for key in groups if not key[1].endswith("(pre-training)")]
    assert fine == [(task, name) for task in ("maze", "pend") for name in GROUPS]  # the sweep file's order
    assert ("maze", "cal-ql (pre-training)") in groups
    assert len(groups[("pend", "calql-ft [warmup_steps=1000]")]) == 2
    config, _ = groups[("maze", "wsrl [warmup_steps=1000]")][0]
    assert config["task"] == "pointmaze-umaze-repeat4-v0" and config["sweep"]["variant"] == {"warmup_steps": 1000}
    # the pre-training curve comes from the manifest's pretrain_dir, not config.json's pretrain_run
    curves = pretrain_curves(groups[("maze", "wsrl [warmup_steps=1000]")])
    assert len(curves) == 3 and curves[0][0].tolist() == [-50.0, 0.0] and curves[0][1].tolist() == [30.0, 50.0]


def test_sweep_table_numbers(sweep):
    rows = summarize(find_runs([sweep]))
    assert [(r["task"], r["group"]) for r in rows] == [(t, g) for t in ("maze", "pend") for g in GROUPS]
    by = {(r["task"], r["group"]): r for r in rows}
    r = by[("maze", "wsrl [warmup_steps=1000]")]
    assert r["finals"] == [90.0, 96.0, 93.0] and r["final"] == pytest.approx(93.0) and r["seeds"] == 3
    assert r["iqm"] == pytest.approx(93.0)  # 3 values: floor(0.75) = 0 trimmed from each end
    assert (r["final_low"], r["final_high"]) == stats.bootstrap_ci([[90.0, 96.0, 93.0]])[1:]
    assert (r["iqm_low"], r["iqm_high"]) == stats.bootstrap_ci([[90.0, 96.0, 93.0]], stats.iqm)[1:]
    assert 90.0 <= r["final_low"] < 93.0 < r["final_high"] <= 96.0
    assert r["pretrained"] == 50.0 and r["best"] == pytest.approx(93.0)
    assert r["auc"] == pytest.approx((50.0 + 63.0 + 93.0) / 3)  # mean of the seeds' mean scores
    assert r["label"] == r["method"] == "wsrl" and r["variant"] == {"warmup_steps": 1000}
    gap = by[("pend", "calql-ft [warmup_steps=1000]")]
    assert (gap["seeds"], gap["listed"], gap["missing"], gap["finals"]) == (2, 3, 1, [30.0, 36.0])

    summary, left_out = aggregate(rows)
    assert [a["group"] for a in summary] == GROUPS and left_out == []
    a = summary[3]  # calql-ft [warmup_steps=1000]: maze 70, 76, 73 and pend 30, 36 pooled
    assert a["runs"] == 5 and a["tasks"] == 2 and a["mean"] == pytest.approx((70 + 76 + 73 + 30 + 36) / 5)
    assert (a["mean"], a["mean_low"], a["mean_high"]) == stats.bootstrap_ci([[70.0, 76.0, 73.0], [30.0, 36.0]])
    assert a["iqm"] == pytest.approx((36 + 70 + 73) / 3)  # sorted 30 36 70 73 76, floor(1.25) = 1 dropped each end

    table = format_table(rows)
    line = next(line for line in table.splitlines() if line.startswith("maze") and "wsrl [warmup_steps=1000]" in line)
    assert f"93.0 [{r['final_low']:.1f}, {r['final_high']:.1f}]" in line and "50.0" in line
    assert "2/3" in next(line for line in table.splitlines() if "pend" in line and GROUPS[3] in line)
    assert "across 2 tasks" in table and "1 of the 24 fine-tuning runs listed in sweep.json has no scores" in table
    assert "pre-training" not in table


def test_one_tasks_folder_does_not_count_the_other_tasks_runs_as_missing(sweep):
    rows = summarize(find_runs([sweep / "pend"]))
    assert {r["task"] for r in rows} == {"pend"} and sum(r["missing"] for r in rows) == 1
    assert "1 of the 12 fine-tuning runs" in format_table(rows)
    pre = summarize(find_runs([sweep / "maze" / "pretrain"]))  # pre-training runs alone: their own table
    assert [(r["group"], r["seeds"], r["kind"]) for r in pre] == [("cal-ql (pre-training)", 3, "pretrain")]
    assert format_table(pre).startswith("pre-training runs")


def test_a_listed_group_without_runs_is_a_row_and_is_not_aggregated(sweep, tmp_path):
    for seed in range(2):
        for name in ("config.json", "metrics.jsonl"):
            (sweep / f"pend/calql-ft/warmup_steps=1000/seed{seed}" / name).unlink()
    rows = summarize(find_runs([sweep]))
    gap = rows[-1]
    assert (gap["group"], gap["seeds"], gap["listed"], gap["missing"]) == (GROUPS[3], 0, 3, 3)
    assert aggregate(rows)[1] == [GROUPS[3]]
    table = format_table(rows)
    assert "not aggregated (no scored runs on every task): calql-ft [warmup_steps=1000]" in table
    assert "3 of the 24 fine-tuning runs" in table
    written = json.loads(write_summary(rows, tmp_path / "summary.json").read_text())
    assert written["rows"][-1]["final"] is None and written["not_aggregated"] == [GROUPS[3]]


def test_groups_not_run_on_every_task_are_left_out_of_the_aggregate(tmp_path):
    for task, method, finals in (("t", "wsrl", [10.0, 20.0]), ("u", "wsrl", [30.0]), ("t", "calql-ft", [5.0])):
        for seed, final in enumerate(finals):
            write_json_run(tmp_path / task / method / f"seed{seed}", {"kind": "finetune", "task": task,
                                                                      "method": method, "seed": seed},
                           [{"step": 100, "score": final}])
    rows = summarize(find_runs([tmp_path]))
    summary, left_out = aggregate(rows)
    assert left_out == ["calql-ft"] and summary[0]["group"] == "wsrl" and summary[0]["mean"] == pytest.approx(20.0)
    # stratified: task u's single run is in every replicate, task t's two runs are resampled
    assert (summary[0]["mean_low"], summary[0]["mean_high"]) == pytest.approx((50 / 3, 70 / 3))
    assert "not aggregated (no scored runs on every task): calql-ft" in format_table(rows)
    written = json.loads(write_summary(rows, tmp_path / "s.json").read_text())
    assert written["rows"][0]["pretrained"] is None  # no evaluation at step 0: NaN is written as null


def test_ablation_series(sweep):
    rows = summarize(find_runs([sweep]))
    series = ablation_series(rows, "warmup_steps")
    assert series["values"] == [0, 1000] and list(series["panels"]) == ["maze", "pend", "all tasks"]
    points = series["panels"]["all tasks"]["calql-ft"]
    assert [p for p, _, _ in points] == [0, 1] and points[1][2] == 5
    assert points[1][1] == stats.bootstrap_ci([[70.0, 76.0, 73.0], [30.0, 36.0]])
    auc = ablation_series(rows, "warmup_steps", "aucs")["panels"]["maze"]["wsrl"]
    assert auc[1][1][0] == pytest.approx((50.0 + 63.0 + 93.0) / 3)


def test_ablation_lines_are_the_combinations_of_the_other_options():
    def row(task, utd, warmup, finals):
        return {"task": task, "label": "wsrl", "variant": {"warmup_steps": warmup, "utd": utd}, "kind": "finetune",
                "seeds": len(finals), "finals": finals}

    rows = [row("t", u, w, [float(u * w)]) for u in (1, 4) for w in (0, 1000)]
    series = ablation_series(rows, "warmup_steps")
    assert list(series["panels"]) == ["t"] and list(series["panels"]["t"]) == ["wsrl [utd=1]", "wsrl [utd=4]"]
    assert [m for _, (m, _, _), _ in series["panels"]["t"]["wsrl [utd=4]"]] == [0.0, 4000.0]
    assert ablation_series(rows, "utd")["values"] == [1, 4]


def test_sweep_figures_and_summary_json(sweep, tmp_path):
    out = tmp_path / "plots"
    paths = plot_runs(find_runs([sweep]), out)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{n}.{ext}" for n in ("scores", "diagnostics-maze", "diagnostics-pend",
                                                  "ablation-warmup_steps", "ablation-warmup_steps-auc")
                           for ext in ("png", "svg")) + ["summary.json"]
    for name in ("ablation-warmup_steps", "ablation-warmup_steps-auc"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (out / f"{name}.svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "warmup_steps" in svg and "all tasks" in svg
    written = json.loads((out / "summary.json").read_text())
    assert written["level"] == 0.95 and len(written["rows"]) == 8 and len(written["aggregate"]) == 4
    row = written["rows"][1]
    assert (row["task"], row["group"], row["finals"]) == ("maze", GROUPS[1], [90.0, 96.0, 93.0])
