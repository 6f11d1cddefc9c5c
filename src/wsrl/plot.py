"""The paper's figures from run directories: score vs environment steps (mean ± standard error over seeds, the
pre-training curve left of a dotted pre-train → fine-tune boundary), and the diagnostics panels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wsrl.summary import group_runs, load_records  # noqa: E402

DIAGNOSTICS = (("q", "Q-value"), ("td", "TD error"), ("kl_policy", "KL(π_pre ‖ π)"),
               ("kl_q", "KL(softmax Q_pre ‖ softmax Q)"))


def seed_curves(runs, key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    curves = []
    for config, records in runs:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            curves.append(tuple(np.array(v, np.float64) for v in zip(*points)))
    return curves


def mean_band(curves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and standard error over seeds on the union of their steps (each seed interpolated)."""
    steps = np.unique(np.concatenate([x for x, _ in curves]))
    values = np.stack([np.interp(steps, x, y) for x, y in curves])
    se = values.std(axis=0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else np.zeros(len(steps))
    return steps, values.mean(axis=0), se


def pretrain_curves(runs, key: str = "score") -> list[tuple[np.ndarray, np.ndarray]]:
    """Each fine-tune run's pre-training scores, shifted so that pre-training ends at step 0."""
    curves = []
    for config, _ in runs:
        pre = config.get("pretrain_run")
        if config.get("kind") != "finetune" or not pre or not (Path(pre) / "metrics.jsonl").exists():
            continue
        points = [(r["step"], r[key]) for r in load_records(Path(pre)) if r.get(key) is not None]
        if points:
            x, y = (np.array(v, np.float64) for v in zip(*points))
            curves.append((x - (config.get("pretrain_steps") or x.max()), y))
    return curves


def draw(ax, curves, label: str, color=None, **style) -> None:
    steps, mean, se = mean_band(curves)
    line, = ax.plot(steps, mean, label=f"{label} (n={len(curves)})", color=color, **style)
    ax.fill_between(steps, mean - se, mean + se, alpha=0.2, color=line.get_color())


def method_colors(groups) -> dict[str, str]:
    """One colour per method from the default property cycle, so a method looks the same in every figure."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({method for _, method in groups})
    return {method: cycle[i % len(cycle)] for i, method in enumerate(methods)}


def score_figure(groups, metric: str = "score"):
    tasks = sorted({task for task, _ in groups})
    colors = method_colors(groups)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for (t, method), runs in sorted(groups.items()):
            if t != task or not seed_curves(runs, metric):
                continue
            color = colors[method]
            draw(ax, seed_curves(runs, metric), method, color)
            if pretrain_curves(runs):
                draw(ax, pretrain_curves(runs), f"{method} pre-training", color, linestyle=":")
        ax.axvline(0, color="black", linestyle=":", linewidth=1)
        ax.set(title=task, xlabel="environment steps (pre-training left of 0)", ylabel="normalized score")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def diagnostics_figure(groups, task: str):
    fig, axes = plt.subplots(1, len(DIAGNOSTICS), figsize=(4.5 * len(DIAGNOSTICS), 3.5), squeeze=False)
    colors = method_colors(groups)
    drawn = False
    for ax, (key, title) in zip(axes[0], DIAGNOSTICS):
        for (t, method), runs in sorted(groups.items()):
            if t != task:
                continue
            color = colors[method]
            for where, style in (("offline", "-"), ("online", "--")):
                curves = seed_curves(runs, f"{key}_{where}")
                if curves:
                    draw(ax, curves, f"{method} {where}", color, linestyle=style)
                    drawn = True
        ax.set(title=title, xlabel="environment steps")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{task}: diagnostics on the offline (—) and online (--) distributions")
    fig.tight_layout()
    return fig if drawn else None


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


def plot_runs(run_dirs, out: Path, *, metric: str = "score", formats=("png", "svg"),
              diagnostics: bool = True) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(run_dirs)
    paths = save(score_figure(groups, metric), out, "scores", formats)
    if diagnostics:
        for task in sorted({t for t, _ in groups}):
            fig = diagnostics_figure(groups, task)
            if fig is not None:
                paths += save(fig, out, f"diagnostics-{task}", formats)
    for (task, method), dip in sorted(unlearning_dips(groups, metric).items()):
        print(f"unlearning dip {task} {method}: {dip:.1f} points")
    return paths
