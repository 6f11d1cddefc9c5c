"""`wsrl findings`: the per-run numbers against hand-worked runs, the difference interval against cases with a known
answer and its coverage, and the table from run directories (unfinished runs left out)."""

import json

import numpy as np
import pytest

from wsrl import cli
from wsrl.findings import CLAIMS, difference, evaluate, per_run, verdict
from wsrl.summary import group_runs

STEPS = list(range(0, 20001, 2500))


def records(scores, q=None, pretrain=()):
    rows = [{"step": s, "phase": "pretrain", "score": v} for s, v in pretrain]
    for i, (step, score) in enumerate(zip(STEPS, scores)):
        rows.append({"step": step, "phase": "warmup" if step < 5000 else "finetune", "score": score,
                     **({"q_offline": q[i]} if q is not None and i < len(q) else {})})
    return rows


def write_run(path, task, method, seed, rows, steps=20000):
    path.mkdir(parents=True)
    config = {"kind": "finetune", "task": task, "method": method, "seed": seed, "steps": steps}
    (path / "config.json").write_text(json.dumps(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_per_run_numbers_of_a_hand_worked_run():
    run = records([40, 38, 20, 25, 30, 35, 38, 40, 45], q=[100, 90, 60, 80, 95, 99, 99, 99, 99],
                  pretrain=[(1000, 5.0), (2000, 50.0)])
    assert per_run(run, "final") == 45
    assert per_run(run, "auc") == pytest.approx(311 / 9)  # pre-training records are not fine-tuning
    assert per_run(run, "dip") == 40 - 20  # lowest score up to step 10,000 (half of 20,000)
    late_drop = records([40, 38, 39, 40, 41, 42, 43, 10, 45])
    assert per_run(late_drop, "dip") == 40 - 38  # a drop after the first half is not an early one
    assert per_run(run, "q_drop") == 100 - 60
    assert np.isnan(per_run(records([40, 41]), "q_drop"))  # no diagnostics recorded


def test_difference_of_constant_groups_is_exact():
    # pooled means: (5 + 5 + 7 + 7 + 7) / 5 = 6.2 and (1 + 1 + 2 + 2 + 2) / 5 = 1.6
    point, low, high = difference([[5, 5], [7, 7, 7]], [[1, 1], [2, 2, 2]])
    assert point == low == high == pytest.approx(4.6)
    assert verdict(low, high, matches=False) == "holds"
    assert verdict(-high, -low, matches=True) == "does not hold"


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = 0
    trials = 300
    for trial in range(trials):
        a = [rng.normal(3.0, 2.0, 10), rng.normal(13.0, 2.0, 10)]  # true difference of means: 1
        b = [rng.normal(2.0, 2.0, 10), rng.normal(12.0, 2.0, 10)]
        _, low, high = difference(a, b, reps=500, seed=trial)
        covered += low <= 1.0 <= high
    assert 0.88 <= covered / trials <= 0.99  # percentile bootstrap with 10 runs per task: a little under 95%
    same = [rng.normal(0, 1, 8)]
    point, low, high = difference(same, same)
    assert point == 0 and low < 0 < high
    assert verdict(low, high, matches=False) == "inconclusive"
    assert verdict(low, high, matches=True) == "holds (no significant difference)"


def test_findings_table_from_run_directories(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for task in ("a-v0", "b-v0"):
        for seed in range(4):
            good = [40, 40, 38] + list(60 + rng.normal(0, 1, 6))
            write_run(tmp_path / task / "wsrl" / f"seed{seed}", task, "wsrl", seed, records(good))
            bad = [40, 10, 5] + list(20 + rng.normal(0, 1, 6))
            write_run(tmp_path / task / "iql-ft" / f"seed{seed}", task, "iql-ft", seed, records(bad))
        # stopped at 10,000 of 20,000 steps: left out
        write_run(tmp_path / task / "iql-ft" / "seed9", task, "iql-ft", 9, records([40, 0, 0, 0, 0]))
    rows = {(r["higher"], r["lower"], r["metric"]): r
            for r in evaluate(group_runs(sorted(tmp_path.glob("*/*/seed*"))))}
    f1 = rows[("iql-ft", "wsrl", "dip")]  # early drops: iql-ft 40 - 5, wsrl 40 - 38
    assert f1["tasks"] == ["a-v0", "b-v0"] and f1["runs"] == [8, 8]
    assert f1["higher_mean"] == pytest.approx(35.0) and f1["lower_mean"] == pytest.approx(2.0)
    assert f1["verdict"] == "holds"
    f2 = rows[("wsrl", "iql-ft", "auc")]
    assert f2["verdict"] == "holds" and f2["difference"] > 30
    assert rows[("wsrl", "calql-ft", "auc")]["verdict"] is None  # no calql-ft runs
    assert len(rows) == len(CLAIMS)
    assert cli.main(["findings", str(tmp_path), "--json", str(tmp_path / "f.json")]) == 0
    table = capsys.readouterr().out
    assert "| F1 | IQL fine-tuning without the data drops more early than WSRL |" in table
    assert "no finished runs of both yet" in table
    assert len(json.loads((tmp_path / "f.json").read_text())) == len(CLAIMS)


@pytest.mark.slow
def test_one_command_makes_every_figure_and_table_of_the_study(tmp_path):
    """studies/figures.sh on a results root holding every label of the study files (one task, 2 seeds each)."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).parents[1]
    labels = set(re.findall(r"^\[methods\.([\w-]+)\]", "".join(p.read_text() for p in (repo / "studies").glob("*.toml")),
                            re.M))
    assert {"wsrl", "wsrl-no-warmup", "iql-ft", "calql-ft-retain", "rlpd", "sac-fast", "wsrl-init-none"} <= labels
    root, rng = tmp_path / "study", np.random.default_rng(2)
    for task in ("a-v0",):
        for label in sorted(labels):
            for seed in range(2):
                scores = list(40 + rng.normal(0, 5, len(STEPS)))
                rows = [{**r, "q_offline": 50.0 - r["step"] / 1000} for r in records(scores)]
                write_run(root / task / label / f"seed{seed}", task, label, seed, rows)
    env = {**os.environ, "STUDY": str(root), "FIGURES": str(tmp_path / "figures"),
           "WSRL": str(Path(sys.executable).parent / "wsrl")}
    done = subprocess.run(["bash", str(repo / "studies" / "figures.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = tmp_path / "figures"
    for name in ("no-retention", "retention", "warmup-source", "initialisation"):
        assert (figures / name / "scores.png").stat().st_size > 10_000, name
    assert "final mean" in (figures / "summary.txt").read_text()
    table = (figures / "findings.md").read_text()
    assert table.count("\n| F") == len(CLAIMS) and "no finished runs" not in table
