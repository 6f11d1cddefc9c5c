"""The paper's figures from run directories and sweep roots: score vs environment steps (mean over seeds with its
95% bootstrap confidence band, the pre-training curve left of a dotted pre-train → fine-tune boundary), the
diagnostics panels, and for sweeps that vary options, the final score and the area under the score curve against
each varied option (docs/aggregation.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wsrl import stats  # noqa: E402
from wsrl.io.runlog import CONFIG_FILE  # noqa: E402
from wsrl.summary import (LEVEL, PRETRAIN_SUFFIX, REPS, group_runs, load_records, summarize,  # noqa: E402
                          table_kind, variant_text, write_summary)

DIAGNOSTICS = (("q", "Q-value"), ("td", "TD error"), ("kl_policy", "KL(π_pre ‖ π)"),
               ("kl_q", "KL(softmax Q_pre ‖ softmax Q)"))


def seed_curves(runs, key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    curves = []
    for config, records in runs:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            curves.append(tuple(np.array(v, np.float64) for v in zip(*points)))
    return curves


def mean_band(curves, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high): the mean over seeds on the union of their steps (each seed interpolated) and the
    bootstrap percentile interval of that mean at `level` (seeds resampled as whole curves)."""
    steps = np.unique(np.concatenate([x for x, _ in curves]))
    values = np.stack([np.interp(steps, x, y) for x, y in curves])
    mean, low, high = stats.bootstrap_mean_band(values, REPS, level)
    return steps, mean, low, high


def pretrain_runs(runs) -> list[tuple[Path, float | None]]:
    """(pre-training run directory, its length in steps) of each fine-tune run: the sweep manifest's
    `pretrain_dir` for sweep runs, config.json's "pretrain_run" otherwise; runs without one are left out."""
    found = []
    for config, _ in runs:
        sweep = config.get("sweep")
        pre = sweep.get("pretrain_dir") if sweep else config.get("pretrain_run")
        if config.get("kind") != "pretrain" and pre and (Path(pre) / "metrics.jsonl").exists():
            found.append((Path(pre), config.get("pretrain_steps")))
    return found


def pretrain_curves(runs, key: str = "score") -> list[tuple[np.ndarray, np.ndarray]]:
    """Each fine-tune run's pre-training scores, shifted so that pre-training ends at step 0."""
    curves = []
    for pre, length in pretrain_runs(runs):
        points = [(r["step"], r[key]) for r in load_records(pre) if r.get(key) is not None]
        if points:
            x, y = (np.array(v, np.float64) for v in zip(*points))
            curves.append((x - (length or x.max()), y))
    return curves


def _pretrain_name(pre: Path) -> str:
    try:
        return json.loads((pre / CONFIG_FILE).read_text()).get("method") or "pre-training"
    except (OSError, ValueError):
        return "pre-training"


def draw(ax, curves, label: str, color=None, **style) -> None:
    steps, mean, low, high = mean_band(curves)
    line, = ax.plot(steps, mean, label=f"{label} (n={len(curves)})", color=color, **style)
    ax.fill_between(steps, low, high, alpha=0.2, color=line.get_color(), linewidth=0)


def group_colors(groups) -> dict[str, str]:
    """One colour per group from the default property cycle, so a group looks the same in every figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(name for _, name in groups))
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def shown_groups(groups) -> dict:
    """The groups drawn as curves: the fine-tuning ones (pre-training appears left of step 0), or the
    pre-training ones when there is no fine-tuning run."""
    pretrain = table_kind(groups) == "pretrain"
    return {key: runs for key, runs in groups.items() if key[1].endswith(PRETRAIN_SUFFIX) == pretrain}


def _tasks(groups) -> list[str]:
    return list(dict.fromkeys(task for task, _ in groups))


def score_figure(groups, metric: str = "score"):
    groups = shown_groups(groups)
    tasks = _tasks(groups)
    colors = group_colors(groups)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        shared = {}  # the pre-training runs -> the groups that start from them: a shared one is drawn once
        for (t, name), runs in groups.items():
            if t != task or not seed_curves(runs, metric):
                continue
            draw(ax, seed_curves(runs, metric), name, colors[name])
            shared.setdefault(frozenset(pre for pre, _ in pretrain_runs(runs)), []).append((name, runs))
        for pres, users in shared.items():
            if pres:
                name, runs = users[0]
                label, color = ((f"{name} pre-training", colors[name]) if len(users) == 1 else
                                (f"{_pretrain_name(next(iter(pres)))} pre-training (shared)", "0.35"))
                draw(ax, pretrain_curves(runs), label, color, linestyle=":")
        ax.axvline(0, color="black", linestyle=":", linewidth=1)
        ax.set(title=task, xlabel="environment steps (pre-training left of 0)",
               ylabel=f"normalized score (mean, {LEVEL:.0%} CI)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def diagnostics_figure(groups, task: str):
    groups = shown_groups(groups)
    fig, axes = plt.subplots(1, len(DIAGNOSTICS), figsize=(4.5 * len(DIAGNOSTICS), 3.5), squeeze=False)
    colors = group_colors(groups)
    drawn = False
    for ax, (key, title) in zip(axes[0], DIAGNOSTICS):
        for (t, name), runs in groups.items():
            if t != task:
                continue
            for where, style in (("offline", "-"), ("online", "--")):
                curves = seed_curves(runs, f"{key}_{where}")
                if curves:
                    draw(ax, curves, f"{name} {where}", colors[name], linestyle=style)
                    drawn = True
        ax.set(title=title, xlabel="environment steps")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{task}: diagnostics on the offline (—) and online (--) distributions "
                 f"(mean over seeds, {LEVEL:.0%} CI)")
    fig.tight_layout()
    return fig if drawn else None


# ---- ablations over a sweep's varied options ------------------------------------------------------------------

def _key(value) -> str:
    return json.dumps(value, sort_keys=True)


def _value_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def ablation_series(rows: list[dict], option: str, quantity: str = "finals") -> dict:
    """What an ablation figure over `option` shows, from summarize's rows of a sweep: {"values": the option's
    values in the sweep file's order, "panels": {panel title: {line name: [(value position, (mean, low, high),
    n)]}}}. Panels: each task, then "all tasks" (the stratified bootstrap over tasks, a point only where every
    task has runs) when there are several. Lines: the label, plus the other varied options' values.
    `quantity`: "finals" (final scores) or "aucs" (each run's mean score over its evaluations)."""
    rows = [r for r in rows if r["seeds"] and option in r["variant"] and r["kind"] == "finetune"]
    values = list(dict.fromkeys(_key(r["variant"][option]) for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    cells = {}  # (line, value) -> {task: scores}
    for r in rows:
        others = {k: v for k, v in r["variant"].items() if k != option}
        line = f"{r['label']} [{variant_text(others)}]" if others else r["label"]
        cells.setdefault((line, _key(r["variant"][option])), {})[r["task"]] = r[quantity]
    lines = list(dict.fromkeys(line for line, _ in cells))
    panels = {task: {} for task in tasks}
    if len(tasks) > 1:
        panels["all tasks"] = {}
    for line in lines:
        for position, value in enumerate(values):
            per_task = cells.get((line, value), {})
            for task, scores in per_task.items():
                panels[task].setdefault(line, []).append(
                    (position, stats.bootstrap_ci([scores], stats.mean, REPS, LEVEL), len(scores)))
            if len(tasks) > 1 and set(per_task) == set(tasks):
                pooled = [per_task[t] for t in tasks]
                panels["all tasks"].setdefault(line, []).append(
                    (position, stats.bootstrap_ci(pooled, stats.mean, REPS, LEVEL), sum(map(len, pooled))))
    return {"values": [json.loads(v) for v in values], "panels": panels}


def ablation_figure(rows: list[dict], option: str, quantity: str = "finals"):
    series = ablation_series(rows, option, quantity)
    if not series["values"]:
        return None
    panels = series["panels"]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    all_lines = list(dict.fromkeys(line for panel in panels.values() for line in panel))
    colors = {line: cycle[i % len(cycle)] for i, line in enumerate(all_lines)}
    what = "final score" if quantity == "finals" else "area under the score curve"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items()):
        for i, (line, points) in enumerate(lines.items()):
            shift = (i - (len(lines) - 1) / 2) * 0.06  # side by side, so that error bars do not hide each other
            x = np.array([p for p, _, _ in points]) + shift
            mean = np.array([m for _, (m, _, _), _ in points])
            low = np.array([lo for _, (_, lo, _), _ in points])
            high = np.array([hi for _, (_, _, hi), _ in points])
            counts = sorted({n for _, _, n in points})
            n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
            ax.errorbar(x, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, color=colors[line],
                        label=f"{line} (n={n})")
        ax.set_xticks(range(len(series["values"])), [_value_text(v) for v in series["values"]])
        ax.set_xlim(-0.5, len(series["values"]) - 0.5)
        ax.set(title=title if title != "all tasks" else "all tasks (stratified bootstrap)", xlabel=option,
               ylabel=f"{what}\n(mean, {LEVEL:.0%} CI)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{what} against {option}" + (" (each run's mean score over its evaluations)"
                                               if quantity == "aucs" else "") + "; n: runs per point")
    fig.tight_layout()
    return fig


def varied_options(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows if r["kind"] == "finetune" for k in r["variant"]))


def unlearning_dips(groups, metric: str = "score") -> dict[tuple[str, str], float]:
    """Score at step 0 minus the lowest score in the first quarter of fine-tuning, averaged over seeds."""
    dips = {}
    for key, runs in groups.items():
        values = []
        for x, y in seed_curves(runs, metric):
            if x[0] == 0 and len(x) > 1:
                early = y[x <= 0.25 * x.max()]
                values.append(y[0] - early.min())
        if values:
            dips[key] = float(np.mean(values))
    return dips


def save(fig, out: Path, name: str, formats) -> list[Path]:
    paths = [out / f"{name}.{fmt}" for fmt in formats]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text)


def plot_runs(run_dirs, out: Path, *, metric: str = "score", formats=("png", "svg"),
              diagnostics: bool = True) -> list[Path]:
    """Figures `scores`, `diagnostics-<task>`, and for sweeps that vary options `ablation-<option>` and
    `ablation-<option>-auc`, each in every format; and summary.json (the table's numbers)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(run_dirs)
    paths = save(score_figure(groups, metric), out, "scores", formats)
    if diagnostics:
        for task in _tasks(shown_groups(groups)):
            fig = diagnostics_figure(groups, task)
            if fig is not None:
                paths += save(fig, out, _file_name(f"diagnostics-{task}"), formats)
    rows = summarize(run_dirs, groups=groups)
    for option in varied_options(rows):
        for quantity, suffix in (("finals", ""), ("aucs", "-auc")):
            fig = ablation_figure(rows, option, quantity)
            if fig is not None:
                paths += save(fig, out, _file_name(f"ablation-{option}{suffix}"), formats)
    paths.append(write_summary(rows, out / "summary.json"))
    fine = {key: runs for key, runs in groups.items() if not key[1].endswith(PRETRAIN_SUFFIX)}
    for (task, name), dip in unlearning_dips(fine, metric).items():
        print(f"unlearning dip {task} {name}: {dip:.1f} points")
    return paths
