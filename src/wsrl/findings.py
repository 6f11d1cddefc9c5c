"""The study's findings (docs/results.md) as comparisons of two groups of fine-tuning runs.

Each comparison takes one number per run (its early drop, its mean score over the evaluations, its final score,
or the fall of its Q-values on the offline data), and reports the difference of the two groups' means over the
tasks both ran, with a stratified bootstrap interval: each group's runs are resampled within each task,
independently of the other group (docs/aggregation.md). The verdict comes from where the interval lies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsrl import stats
from wsrl.summary import LEVEL, REPS, group_runs

EARLY = 0.5  # the early phase of fine-tuning: its first half (WSRL's updates start after its 5,000 warmup steps)


def _scores(records: list[dict], key: str = "score") -> tuple[np.ndarray, np.ndarray]:
    points = [(r["step"], r[key]) for r in records if r.get("phase") != "pretrain" and r.get(key) is not None]
    steps, values = zip(*points) if points else ((), ())
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def _drop(records: list[dict], key: str, early: float) -> float:
    """Value at step 0 minus the lowest value in the first `early` share of fine-tuning (NaN without step 0)."""
    steps, values = _scores(records, key)
    if len(steps) < 2 or steps[0] != 0:
        return math.nan
    return float(values[0] - values[steps <= early * steps[-1]].min())


def per_run(records: list[dict], metric: str) -> float:
    """One run's number: "auc" (mean score over its evaluations), "final" (last score), "dip" (score at step 0
    minus the lowest score in the first half of fine-tuning), "q_drop" (q_offline at step 0 minus its lowest
    value over fine-tuning). NaN when the run has no such record."""
    if metric == "dip":
        return _drop(records, "score", EARLY)
    if metric == "q_drop":
        return _drop(records, "q_offline", 1.0)
    _, values = _scores(records)
    if not len(values):
        return math.nan
    return float(values.mean() if metric == "auc" else values[-1])


METRICS = {"auc": "mean score over fine-tuning", "final": "final score", "dip": "early drop of the score",
           "q_drop": "fall of Q on the offline data"}


@dataclass(frozen=True)
class Claim:
    finding: str
    text: str  # the paper's claim for this comparison
    metric: str
    higher: str  # the group the paper says is higher on `metric`
    lower: str
    matches: bool = False  # "matches or beats": only a significantly lower `higher` contradicts it


CLAIMS = (
    Claim("F1", "Cal-QL fine-tuning without the data drops more early than WSRL", "dip", "calql-ft", "wsrl"),
    Claim("F1", "IQL fine-tuning without the data drops more early than WSRL", "dip", "iql-ft", "wsrl"),
    Claim("F2", "WSRL fine-tunes faster than Cal-QL fine-tuning without the data", "auc", "wsrl", "calql-ft"),
    Claim("F2", "WSRL fine-tunes faster than IQL fine-tuning without the data", "auc", "wsrl", "iql-ft"),
    Claim("F3", "without the warmup, Q on the offline data falls further", "q_drop", "wsrl-no-warmup", "wsrl"),
    Claim("F3", "without the warmup, the score drops more early", "dip", "wsrl-no-warmup", "wsrl"),
    Claim("F4", "WSRL matches or beats RLPD (keeps the data)", "final", "wsrl", "rlpd", matches=True),
    Claim("F4", "WSRL matches or beats Cal-QL fine-tuning with the data", "final", "wsrl", "calql-ft-retain",
          matches=True),
    Claim("F4", "WSRL matches or beats IQL fine-tuning with the data", "final", "wsrl", "iql-ft-retain",
          matches=True),
    Claim("F5", "warmup with the pre-trained policy beats uniform-action warmup", "auc", "wsrl",
          "wsrl-warmup-uniform"),
    Claim("F5", "warmup with the pre-trained policy beats dataset-transition warmup", "auc", "wsrl",
          "wsrl-warmup-dataset"),
    Claim("F6", "initialising policy and Q beats initialising the policy only", "auc", "wsrl", "wsrl-init-policy"),
    Claim("F6", "initialising policy and Q beats initialising the Q-function only", "auc", "wsrl",
          "wsrl-init-critic"),
    Claim("F6", "initialising policy and Q beats initialising neither", "auc", "wsrl", "wsrl-init-none"),
)


def difference(higher_by_task, lower_by_task, reps: int = REPS, level: float = LEVEL,
               seed: int = 0) -> tuple[float, float, float]:
    """(mean of `higher` - mean of `lower`, each over all tasks' runs pooled; its stratified bootstrap percentile
    interval at `level`), the two groups resampled independently, each within every task."""
    a, b = (np.concatenate([np.asarray(t, np.float64) for t in g]) for g in (higher_by_task, lower_by_task))
    replicates = (stats.stratified_resamples(higher_by_task, reps, seed).mean(axis=1)
                  - stats.stratified_resamples(lower_by_task, reps, seed + 1).mean(axis=1))
    low, high = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return float(a.mean() - b.mean()), float(low), float(high)


def verdict(low: float, high: float, matches: bool) -> str:
    if low > 0:
        return "holds"
    if high < 0:
        return "does not hold"
    return "holds (no significant difference)" if matches else "inconclusive"


def finished(config: dict, records: list[dict]) -> bool:
    """Whether a run evaluated at its last step (a run still going, or stopped, is left out)."""
    steps, _ = _scores(records)
    return bool(len(steps)) and steps[-1] >= config.get("steps", 0)


def evaluate(groups: dict, claims=CLAIMS, reps: int = REPS, level: float = LEVEL) -> list[dict]:
    """One row per claim: the tasks where both groups have finished runs with the metric, each group's mean, the
    difference with its interval and the verdict (None when a group has no such run yet)."""
    by_name: dict[str, dict[str, list[float]]] = {}
    for (task, name), runs in groups.items():
        for claim in claims:
            if name in (claim.higher, claim.lower):
                values = [per_run(records, claim.metric) for config, records in runs if finished(config, records)]
                by_name.setdefault(f"{name}|{claim.metric}", {})[task] = [v for v in values if not math.isnan(v)]
    rows = []
    for claim in claims:
        higher, lower = (by_name.get(f"{g}|{claim.metric}", {}) for g in (claim.higher, claim.lower))
        tasks = [t for t in higher if higher[t] and lower.get(t)]
        row = {"finding": claim.finding, "claim": claim.text, "metric": claim.metric, "higher": claim.higher,
               "lower": claim.lower, "tasks": tasks, "runs": [sum(len(g[t]) for t in tasks) for g in (higher, lower)]}
        if not tasks:
            rows.append(row | {"difference": None, "low": None, "high": None, "verdict": None,
                               "higher_mean": None, "lower_mean": None})
            continue
        point, low, high = difference([higher[t] for t in tasks], [lower[t] for t in tasks], reps, level)
        rows.append(row | {"higher_mean": float(np.mean([v for t in tasks for v in higher[t]])),
                           "lower_mean": float(np.mean([v for t in tasks for v in lower[t]])),
                           "difference": point, "low": low, "high": high,
                           "verdict": verdict(low, high, claim.matches)})
    return rows


def format_findings(rows: list[dict]) -> str:
    """A Markdown table: finding, claim, what was compared, the difference with its interval, the verdict."""
    pct = f"{LEVEL:.0%}"
    lines = [f"| finding | the paper's claim | measure (higher − lower group) | tasks | runs | means | difference "
             f"[{pct} CI] | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        measure = f"{METRICS[r['metric']]}: `{r['higher']}` − `{r['lower']}`"
        if r["verdict"] is None:
            lines.append(f"| {r['finding']} | {r['claim']} | {measure} | 0 | — | — | — | no finished runs of both yet |")
            continue
        lines.append(f"| {r['finding']} | {r['claim']} | {measure} | {len(r['tasks'])} | {r['runs'][0]} vs "
                     f"{r['runs'][1]} | {r['higher_mean']:.1f} vs {r['lower_mean']:.1f} | {r['difference']:.1f} "
                     f"[{r['low']:.1f}, {r['high']:.1f}] | {r['verdict']} |")
    return "\n".join(lines)


def findings(run_dirs, out: Path | None = None) -> str:
    """The findings table of these runs (and, with `out`, its rows as JSON)."""
    rows = evaluate(group_runs(run_dirs))
    if out is not None:
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    return format_findings(rows)
