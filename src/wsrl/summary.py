"""Results from run directories: find them, load them, and tabulate final / best scores with IQM."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from wsrl.errors import WsrlError
from wsrl.io.runlog import CONFIG_FILE, METRICS_FILE


def find_runs(paths) -> list[Path]:
    """Every directory holding config.json and metrics.jsonl at or below the given paths."""
    found = []
    for path in map(Path, paths):
        candidates = [path] + sorted(p.parent for p in path.rglob(CONFIG_FILE)) if path.is_dir() else []
        found += [c for c in candidates if (c / CONFIG_FILE).is_file() and (c / METRICS_FILE).is_file()]
    return sorted(set(found))


def load_records(run_dir: Path) -> list[dict]:
    """metrics.jsonl records; a cut last line (a run killed mid-write) is ignored, a bad line elsewhere is not."""
    path = Path(run_dir) / METRICS_FILE
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number == len(lines):
                break
            raise WsrlError(f"{path}, line {number}: not valid JSON ({err}); the file is damaged") from err
    return records


def load_run(run_dir: Path) -> tuple[dict, list[dict]]:
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text()), load_records(run_dir)


def scores(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["score"]) for r in records if r.get("score") is not None]


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def iqm(values) -> float:
    """Interquartile mean: drop floor(25% of n) values from each end, average the rest (scipy's trim_mean with
    0.25, which rliable uses)."""
    values = np.sort(np.asarray(values, np.float64))
    cut = int(0.25 * len(values))
    return float(values[cut:len(values) - cut].mean())


def group_runs(run_dirs) -> dict[tuple[str, str], list[tuple[dict, list[dict]]]]:
    """Runs by (task, method); each run is one seed, so two runs of one seed in a group are refused."""
    groups, seen = defaultdict(list), {}
    for run in run_dirs:
        config, records = load_run(run)
        key = (config["task"], config["method"], config.get("kind"), config.get("seed"))
        if key in seen:
            raise WsrlError(f"{seen[key]} and {run} are both seed {key[3]} of {key[1]} on {key[0]}: a seed counts "
                            f"once; pass the folders of one of them only")
        seen[key] = run
        groups[(config["task"], config["method"])].append((config, records))
    return dict(groups)


def summarize(run_dirs) -> list[dict]:
    rows = []
    for (task, method), runs in sorted(group_runs(run_dirs).items()):
        curves = [scores(records) for _, records in runs if scores(records)]
        if not curves:
            continue
        final, final_se = mean_se([c[-1][1] for c in curves])
        best, _ = mean_se([max(s for _, s in c) for c in curves])
        start = [c[0][1] for c in curves if c[0][0] == 0]
        rows.append({"task": task, "method": method, "seeds": len(curves), "final": final, "final_se": final_se,
                     "best": best, "pretrained": mean_se(start)[0] if start else float("nan"),
                     "finals": [c[-1][1] for c in curves]})
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'task':<34}{'method':<18}{'seeds':>6}{'pre-trained':>13}{'final':>16}{'best':>8}"]
    for r in rows:
        final = f"{r['final']:.1f} ± {r['final_se']:.1f}"
        lines.append(f"{r['task']:<34}{r['method']:<18}{r['seeds']:>6}{r['pretrained']:>13.1f}{final:>16}"
                     f"{r['best']:>8.1f}")
    by_method = defaultdict(list)
    for r in rows:
        by_method[r["method"]] += r["finals"]
    lines.append("")
    lines.append("IQM of final scores across tasks and seeds: " +
                 ", ".join(f"{m} {iqm(v):.1f} (n={len(v)})" for m, v in sorted(by_method.items())))
    return "\n".join(lines)
