"""`wsrl demo`: the paper's main claim, scaled to minutes on a laptop CPU, with no download.

On the fixed-goal point U-maze with each action held for 4 simulation steps: generate a scripted-planner dataset, pre-train Cal-QL, then fine-tune without
the dataset three ways — WSRL, WSRL without warmup, and Cal-QL fine-tuning — for several seeds trained together
in one process, and print what happened (mean ± standard error over seeds): the pre-trained and fine-tuned
scores, how far the Q-values on the (discarded) offline data fell at the start of fine-tuning, and the wall time
of each stage. Finished stages are reused when the command is run again.

Scaled-down settings (stated in the table's header): 64x64 networks, 2 critics, discount 0.9, 4,000 pre-training
steps with an initial temperature of 0.05, a 1,000-step warmup and 4,000 fine-tuning steps, instead of the
paper's 256-wide networks, 10 critics, discount 0.99, 1M pre-training steps, a 5,000-step warmup and 500,000+
fine-tuning steps; the last hidden layer starts like the others (sqrt 2), not at the antmaze preset's 0.01.
Holding each action for 4 steps puts the goal about 33 decisions from the start instead of 130, within sight of
a discount of 0.9: on the maze without it, fine-tuning collapsed after the warmup (docs/results.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from wsrl.config import FinetuneConfig, PretrainConfig
from wsrl.datagen import generate
from wsrl.summary import load_records, mean_se
from wsrl.train.offline import pretrain
from wsrl.train.online import finetune
from wsrl.train.run import CHECKPOINT_DIR, has_checkpoint

TASK = "pointmaze-umaze-repeat4-v0"


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    data_steps: int = 8_000  # decisions (32,000 simulation steps)
    pretrain_steps: int = 4_000
    finetune_steps: int = 4_000
    warmup_steps: int = 1_000
    hidden: tuple[int, ...] = (64, 64)
    num_critics: int = 2
    eval_interval: int = 500
    diagnostic_interval: int = 100
    eval_episodes: int = 10
    # A small initial temperature lets the policy follow the critic within a few thousand steps (the paper's
    # 1M-step pre-training starts at 1.0 and has time to lower it), and gamma = 0.9 lets the sparse-reward
    # Q-function converge in that many steps (with 0.99 its values are still far from converged).
    init_temperature: float = 0.05
    discount: float = 0.9
    # The antmaze preset starts the last hidden layer at 0.01 (the authors' kernel_scale_final); with 64-unit
    # LayerNorm networks that made WSRL collapse after its warmup in this demo (docs/results.md), so the demo
    # initialises it like the other layers.
    final_init_scale: float = math.sqrt(2.0)
    seeds: tuple[int, ...] = (0, 1, 2)


QUICK = DemoSettings(data_steps=3_000, pretrain_steps=100, finetune_steps=400, warmup_steps=100, hidden=(16, 16),
                     eval_interval=200, diagnostic_interval=100, eval_episodes=2, seeds=(0, 1))
VARIANTS = {  # label -> fine-tuning options
    "wsrl": {"method": "wsrl"},
    # Without warmup the authors still wait for one batch of rows (1,024) before updating; scaled like the warmup.
    "wsrl-no-warmup": {"method": "wsrl", "warmup_source": "none", "update_after": 256},
    "calql-ft": {"method": "calql-ft"},
}
WARMED_UP = ("wsrl",)  # the variants that warm up, for the settings' warmup_steps


def _done(run_dirs: list[Path]) -> bool:
    return all(has_checkpoint(d) for d in run_dirs)


def _timed(stage: str, times: dict, fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    times[stage] = time.monotonic() - start
    return result


def run_demo(out: Path, s: DemoSettings, progress: bool = True, variants=tuple(VARIANTS)) -> dict:
    """Run (or reuse) every stage, all seeds of a stage in one process; return {label: [run directory per seed]}
    plus timings. Seed s pre-trains and fine-tunes with seed s (the dataset is always generated with seed 0)."""
    out.mkdir(parents=True, exist_ok=True)
    times: dict = json.loads((out / "times.json").read_text()) if (out / "times.json").exists() else {}
    dataset = out / "dataset.hdf5"
    if not dataset.exists():
        _timed("datagen", times, generate, "maze-planner", TASK, dataset, steps=s.data_steps, seed=0,
               progress=progress)
    common = dict(task=TASK, seeds=s.seeds, dataset=str(dataset), eval_interval=s.eval_interval,
                  discount=s.discount, final_init_scale=s.final_init_scale, eval_episodes=s.eval_episodes,
                  critic_hidden_dims=s.hidden, actor_hidden_dims=s.hidden, progress=progress)
    pre_dirs = [out / "pretrain" / f"seed{seed}" for seed in s.seeds]
    if not _done(pre_dirs):
        _timed("pretrain", times, pretrain, PretrainConfig(
            **common, algorithm="cal-ql", steps=s.pretrain_steps, init_temperature=s.init_temperature,
            num_critics=s.num_critics, run_dir=str(out / "pretrain"),
            save_interval=max(s.pretrain_steps // 4, 1), resume=(pre_dirs[0] / "config.json").exists()))
    runs = {}
    for label in variants:
        run_dirs = [out / label / f"seed{seed}" for seed in s.seeds]
        if not _done(run_dirs):
            _timed(label, times, finetune, FinetuneConfig(
                **common, **VARIANTS[label], label=label, checkpoint=str(out / "pretrain" / "seed{seed}" /
                                                                          CHECKPOINT_DIR),
                run_dir=str(out / label), steps=s.finetune_steps,
                warmup_steps=s.warmup_steps if label in WARMED_UP else None,
                num_critics=s.num_critics, diagnostic_interval=s.diagnostic_interval,
                save_interval=max(s.finetune_steps // 4, 1), resume=(run_dirs[0] / "config.json").exists()))
        runs[label] = run_dirs
        (out / "times.json").write_text(json.dumps(times))
    return {"runs": runs, "pretrain": pre_dirs, "times": times}


def summarize_run(run_dir: Path, window: float = 0.25) -> dict:
    """Scores and the lowest offline-data Q in the first `window` of fine-tuning (the paper's downward spiral)."""
    records = load_records(run_dir)
    scored = [r for r in records if r.get("score") is not None]
    last_step = records[-1]["step"]
    early = [r["q_offline"] for r in records if r.get("q_offline") is not None and r["step"] <= window * last_step]
    return {"pretrained": scored[0]["score"], "final": scored[-1]["score"],
            "best": max(r["score"] for r in scored), "q_offline_start": early[0] if early else float("nan"),
            "q_offline_min_early": min(early) if early else float("nan")}


def summarize_seeds(run_dirs: list[Path]) -> dict:
    """{quantity: (mean, standard error over seeds)} of `summarize_run`."""
    per_seed = [summarize_run(d) for d in run_dirs]
    return {k: mean_se([r[k] for r in per_seed]) for k in per_seed[0]} | {"n": len(per_seed)}


def verdicts(rows: dict) -> list[str]:
    """The paper's claims, checked on the seeds' means; each line says plainly whether it held."""
    wsrl, nowarm, calql = rows["wsrl"], rows["wsrl-no-warmup"], rows["calql-ft"]

    def m(row, key):
        return row[key][0]

    checks = [
        ("WSRL improves on its pre-trained policy without the offline data",
         m(wsrl, "final") > m(wsrl, "pretrained"), f"{m(wsrl, 'pretrained'):.0f} -> {m(wsrl, 'final'):.0f}"),
        ("WSRL ends above Cal-QL fine-tuning (both without retention)",
         m(wsrl, "final") > m(calql, "final"), f"{m(wsrl, 'final'):.0f} vs {m(calql, 'final'):.0f}"),
        ("without warmup, Q on the offline data falls further at the start of fine-tuning",
         m(nowarm, "q_offline_min_early") < m(wsrl, "q_offline_min_early"),
         f"min Q {m(nowarm, 'q_offline_min_early'):.1f} vs {m(wsrl, 'q_offline_min_early'):.1f} with warmup"),
    ]
    n = wsrl["n"]
    return [f"[{'holds' if ok else 'DOES NOT HOLD'}] {claim}: {detail} (means over {n} seeds)"
            for claim, ok, detail in checks]


def _pm(value: tuple[float, float], digits: int = 0) -> str:
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def format_demo_table(rows: dict, times: dict, s: DemoSettings) -> str:
    header = (f"wsrl demo on {TASK}: {s.data_steps:,} planner steps, Cal-QL {s.pretrain_steps:,} steps, "
              f"fine-tuning {s.finetune_steps:,} steps (warmup {s.warmup_steps:,}), gamma {s.discount}, "
              f"{s.num_critics} critics {'x'.join(map(str, s.hidden))}, last hidden layer init "
              f"{s.final_init_scale:.2g}; scores are success rates in % over {s.eval_episodes} episodes, "
              f"mean ± standard error over seeds {', '.join(map(str, s.seeds))}")
    lines = [header, "",
             f"{'method':<16}{'pre-trained':>14}{'final':>14}{'best':>14}{'min Q offline (early)':>24}"
             f"{'wall time':>11}"]
    for label, r in rows.items():
        lines.append(f"{label:<16}{_pm(r['pretrained']):>14}{_pm(r['final']):>14}{_pm(r['best']):>14}"
                     f"{_pm(r['q_offline_min_early'], 2):>24}{times.get(label, float('nan')):>10.0f}s")
    lines.append(f"(data generation {times.get('datagen', 0):.0f}s, pre-training {times.get('pretrain', 0):.0f}s; "
                 f"each wall time covers all seeds, trained together)")
    return "\n".join(lines)


def demo(out: Path, quick: bool = False, seeds: tuple[int, ...] | None = None) -> str:
    settings = QUICK if quick else DemoSettings()
    if seeds is not None:
        settings = dataclasses.replace(settings, seeds=tuple(seeds))
    result = run_demo(out, settings)
    rows = {label: summarize_seeds(dirs) for label, dirs in result["runs"].items()}
    text = format_demo_table(rows, result["times"], settings) + "\n\n" + "\n".join(verdicts(rows))
    try:
        from wsrl.plot import plot_runs
        paths = plot_runs([d for dirs in result["runs"].values() for d in dirs], out / "plots")
        text += "\n\nplots: " + ", ".join(str(p) for p in paths)
    except ImportError:
        pass
    (out / "demo.txt").write_text(text + "\n")
    print(text)
    return text
