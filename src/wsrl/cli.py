"""The `wsrl` command line. Options of `pretrain`, `finetune` and `run` are generated from the config dataclasses,
so `--help` always lists every option with its meaning and default."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from wsrl import config as C

BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_bool(text: str) -> bool:
    try:
        return BOOL_WORDS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


def parse_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes like 256,256, got {text!r}") from None
    if not dims or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return dims


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are integers separated by commas, e.g. 0,1,2; got {text!r}") \
            from None


def parse_json_object(text: str) -> dict:
    """--env-kwargs: a JSON object of keyword arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"frame_skip\": 2}}' (quote it for "
                                         f"the shell; keys and strings in double quotes); got {text!r}: {err}") \
            from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}} of keyword arguments, got {text!r}")
    return value


def add_dataclass_options(parser: argparse.ArgumentParser, cls, skip=()) -> None:
    kinds = C.option_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind = kinds[f.name]
        converter = parse_seeds if f.name == "seeds" else \
            {bool: parse_bool, tuple: parse_dims, int: int, float: float, str: str, dict: parse_json_object}[kind]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else \
            json.dumps(default) if isinstance(default, dict) else default
        if f.name == "task":
            shown = f"{C.DEFAULT_TASK} unless --env is given"
        metavar = {bool: "BOOL", tuple: "N,N", dict: "JSON"}.get(kind, f.name.upper())
        flag = {"nargs": "?", "const": True} if kind is bool else {}  # `--resume` alone means true
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=converter, default=default,
                            metavar=metavar, help=f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%"),
                            **flag)


def dataclass_from_args(cls, args: argparse.Namespace, **overrides):
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **overrides})


# ---- commands ------------------------------------------------------------------------------------------------

def cmd_pretrain(args) -> None:
    from wsrl.train.offline import pretrain
    run_dirs = pretrain(dataclass_from_args(C.PretrainConfig, args))
    for run_dir in run_dirs if isinstance(run_dirs, list) else [run_dirs]:
        print(f"pre-training done: {run_dir} (checkpoint: {run_dir / 'checkpoint'})")


def cmd_finetune(args) -> None:
    from wsrl.train.online import finetune
    run_dirs = finetune(dataclass_from_args(C.FinetuneConfig, args))
    for run_dir in run_dirs if isinstance(run_dirs, list) else [run_dirs]:
        print(f"fine-tuning done: {run_dir}")


def cmd_run(args) -> None:
    from wsrl.api import run
    finetune_cfg = dataclass_from_args(C.FinetuneConfig, args)
    pretrain_dir, finetune_dir = run(finetune_cfg, algorithm=args.algorithm, pretrain_steps=args.pretrain_steps)
    print(f"pre-training: {pretrain_dir}\nfine-tuning: {finetune_dir}")


def cmd_tasks(args) -> None:
    from wsrl.tasks import describe_tasks
    rows = describe_tasks()
    if args.family:
        families = sorted({r["family"] for r in rows})
        C.choose("family", args.family, families)
        rows = [r for r in rows if r["family"] == args.family]
    width = max((len(r["name"]) for r in rows), default=0)
    for row in rows:
        present = "yes" if row["dataset_present"] else "no "
        print(f"{row['name']:<{width}} {row['family']:<13} dataset: {present}  env {row['env_id']}")
        if not row["dataset_present"] and args.verbose:
            print(f"    {row['how_to_get']}")
    if not args.verbose:
        print("\n(--verbose says how to get each missing dataset)")


def cmd_datagen(args) -> None:
    from wsrl.datagen import generate
    from wsrl.tasks import get_task
    from wsrl.datagen import minari_id
    env = None
    if args.env is not None:
        if args.task is not None:
            raise C.ConfigError(f"pass either --task {args.task} or --env {args.env}, not both")
        env = {"env": args.env, "family": args.family, "env_kwargs": args.env_kwargs, "env_module": args.env_module,
               "max_episode_steps": args.max_episode_steps, "success_key": args.success_key}
        out = args.out
    elif args.task is None:
        raise C.ConfigError("datagen needs --task T (a registry task) or --env ID (your own environment)")
    else:
        given = [f for f in ("family", "env_kwargs", "env_module", "max_episode_steps", "success_key")
                 if getattr(args, f) not in (None, {})]
        if given:
            raise C.ConfigError(f"{', '.join('--' + f.replace('_', '-') for f in given)} go(es) with --env")
        default = minari_id(args.task) if args.format == "minari" else get_task(args.task).dataset_path
        out = args.out or default
    recipe_kw = {}
    if args.oracle is not None:
        if args.recipe != "oracle":
            raise C.ConfigError(f"--oracle {args.oracle} goes with --recipe oracle, not --recipe {args.recipe}")
        recipe_kw["kind"] = args.oracle
    path = generate(args.recipe, args.task, out, steps=args.steps, seed=args.seed, noise=args.noise,
                    fmt=args.format, progress=not args.quiet, checkpoint=args.checkpoint, overwrite=args.overwrite,
                    env=env, resume=args.resume, **recipe_kw)
    print(f"dataset written: {path}")


def cmd_plot(args) -> None:
    from wsrl.plot import plot_runs
    from wsrl.summary import find_runs
    runs = find_runs([Path(p) for p in args.runs])
    if not runs:
        raise C.ConfigError(f"no run directories (config.json + metrics.jsonl) under {', '.join(args.runs)}")
    for path in plot_runs(runs, Path(args.out)):
        print(f"wrote {path}")


def cmd_summary(args) -> None:
    from wsrl.summary import find_runs, format_table, summarize
    runs = find_runs([Path(p) for p in args.runs])
    if not runs:
        raise C.ConfigError(f"no run directories (config.json + metrics.jsonl) under {', '.join(args.runs)}")
    print(format_table(summarize(runs)))


def cmd_findings(args) -> None:
    from wsrl.findings import findings
    from wsrl.summary import find_runs
    runs = find_runs([Path(p) for p in args.runs])
    if not runs:
        raise C.ConfigError(f"no run directories (config.json + metrics.jsonl) under {', '.join(args.runs)}")
    print(findings(runs, Path(args.json) if args.json else None))


def cmd_sweep(args) -> None:
    from wsrl.sweep import report_line, sweep
    source = args.files if len(args.files) > 1 else args.files[0]
    tasks = args.tasks.split(",") if args.tasks is not None else None
    outcomes = sweep(source, root=args.root, address=args.address, num_cpus=args.num_cpus, dry_run=args.dry_run,
                     progress=not args.quiet, tasks=tasks)
    if args.dry_run:
        return
    for outcome in outcomes:
        if outcome.status == "done":
            print(f"  done in {outcome.seconds:.0f} s: {outcome.job}")
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "blocked")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + " (skipped: finished before)")
    unfinished = [o for o in outcomes if o.status in ("failed", "blocked")]
    for outcome in unfinished:
        print("  " + report_line(outcome))
    if unfinished:
        raise C.ConfigError(f"{len(unfinished)} job(s) did not finish; fix the cause shown in the log(s), then run "
                            f"the same command again: finished jobs are skipped and started runs resume")


def cmd_export_policy(args) -> None:
    from wsrl.io.checkpoint import export_policy
    out = export_policy(args.checkpoint, args.out)
    print(f"wrote the policy checkpoint {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB)")


def cmd_demo(args) -> None:
    from wsrl.demo import demo
    demo(Path(args.out), quick=args.quick, seeds=args.seeds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsrl", description="Offline pre-training and online fine-tuning without retaining the offline data "
        "(WSRL), with the paper's baselines, ablations and diagnostics.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="generate a small maze dataset, pre-train, fine-tune, print a table and plot")
    p.add_argument("--out", default="runs/demo", help="directory for the demo's runs, table and plot")
    p.add_argument("--quick", action="store_true", help="a much shorter run (for smoke tests)")
    p.add_argument("--seeds", type=parse_seeds, default=None,
                   help="seeds, trained together; seed s pre-trains and fine-tunes with s (default: 0,1,2)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("tasks", help="list the tasks, whether each dataset is present and how to get it")
    p.add_argument("--family", default=None, help="only this family (antmaze, kitchen, adroit, locomotion, ...)")
    p.add_argument("--verbose", action="store_true", help="say how to get each missing dataset")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("datagen", help="generate a dataset locally (no download)")
    p.add_argument("--task", default=None, help="task id (see `wsrl tasks`); or --env")
    p.add_argument("--env", default=None, help="your own Gymnasium environment id instead of --task (recipes "
                   "random and policy; docs/your-own-environment.md)")
    p.add_argument("--family", default=None, help="with --env: the hyper-parameter preset (checked when given; "
                   "it does not change the data)")
    p.add_argument("--env-kwargs", dest="env_kwargs", type=parse_json_object, default={}, metavar="JSON",
                   help="with --env: keyword arguments of gym.make, as a JSON object")
    p.add_argument("--env-module", dest="env_module", default=None, help="with --env: a module imported before "
                   "gym.make")
    p.add_argument("--max-episode-steps", dest="max_episode_steps", type=int, default=None,
                   help="with --env: the episode time limit (default: the environment spec's)")
    p.add_argument("--success-key", dest="success_key", default=None, help="with --env: the info key that is "
                   "true on success (stored as infos/success)")
    p.add_argument("--recipe", required=True,
                   help="maze-planner, random, policy (needs --checkpoint), oracle (OGBench manipulation), "
                        "navigate (OGBench point / ant mazes; ants are walked by the shipped ant-xy-v0 agent or "
                        "--checkpoint)")
    p.add_argument("--steps", type=int, default=1_000_000, help="environment steps (default: 1000000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--noise", type=float, default=None, help="action noise std (default: the recipe's)")
    p.add_argument("--format", default="hdf5", choices=("hdf5", "minari"), help="file format (default: hdf5)")
    p.add_argument("--checkpoint", default=None, help="policy checkpoint for --recipe policy / navigate")
    p.add_argument("--oracle", default=None, choices=("play", "noisy"),
                   help="with --recipe oracle: OGBench's plan oracle (play, the default) or Markov oracle with "
                        "action noise (noisy)")
    p.add_argument("--out", default=None, help="output path (default: the task's dataset path, for --env "
                   "<data dir>/<env id>.hdf5); with --format minari, the dataset id (default: wsrl/<task or env "
                   "id>) under $MINARI_DATASETS_PATH")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing dataset at the output path (without it, an existing one is refused "
                        "before anything is generated)")
    p.add_argument("--resume", type=parse_bool, nargs="?", const=True, default=False, metavar="BOOL",
                   help="continue a killed generation from <out>.partial (saved about once a minute; the same "
                        "options), writing the dataset an uninterrupted run writes")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_datagen)

    p = sub.add_parser("pretrain", help="offline pre-training (Cal-QL, CQL, IQL)")
    add_dataclass_options(p, C.PretrainConfig)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("finetune", help="online fine-tuning: " + ", ".join(C.METHODS))
    add_dataclass_options(p, C.FinetuneConfig)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("run", help="pre-train then fine-tune, in <run-dir>/pretrain and <run-dir>/finetune")
    add_dataclass_options(p, C.FinetuneConfig, skip=("checkpoint",))
    p.add_argument("--algorithm", default=None,
                   help="offline algorithm: cal-ql, cql, iql (default: the one the method continues, else the "
                        "family's: cal-ql, or cql on locomotion)")
    p.add_argument("--pretrain-steps", type=int, default=None, help="offline steps (default: family preset)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="run a sweep file (tasks x methods x seeds x varied options) on Ray")
    p.add_argument("files", nargs="+", metavar="FILE", help="the sweep file (TOML; docs/sweeps.md); several files "
                   "with one root run as one graph (shared pre-training runs once)")
    p.add_argument("--root", default=None, help="output root (default: the file's `root`)")
    p.add_argument("--address", default=None, help="an existing Ray cluster: auto, or ray://host:10001 (default: "
                   "start a local Ray instance)")
    p.add_argument("--num-cpus", dest="num_cpus", type=int, default=None,
                   help="CPUs of the local Ray instance (default: all); each run takes cpus_per_run of them")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="print the graph and each job's command "
                   "line, run nothing")
    p.add_argument("--tasks", default=None, help="comma-separated: run only these tasks' jobs (a study in chunks; "
                   "default: every task)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="the paper's figures from run directories (PNG and SVG)")
    p.add_argument("runs", nargs="+", help="run directories or folders containing them")
    p.add_argument("--out", default="plots", help="output directory (default: plots)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("summary", help="results table: final and best score per method and task, IQM")
    p.add_argument("runs", nargs="+", help="run directories or folders containing them")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("findings", help="the study's findings table: each claim of the paper as a difference "
                       "between two groups of runs, with its bootstrap interval and a verdict (docs/results.md)")
    p.add_argument("runs", nargs="+", help="run directories or folders containing them (e.g. results/study)")
    p.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    p.set_defaults(func=cmd_findings)

    p = sub.add_parser("export-policy", help="copy a checkpoint's policy alone (small, for `wsrl datagen "
                       "--checkpoint`; not trainable)")
    p.add_argument("checkpoint", help="a checkpoint directory (e.g. RUN/checkpoint)")
    p.add_argument("out", help="the new policy checkpoint's directory")
    p.set_defaults(func=cmd_export_policy)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from wsrl.errors import WsrlError
    try:
        args.func(args)
    except (WsrlError, FileNotFoundError) as err:
        print(f"wsrl {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: continue with the same command plus --resume (from the last snapshot; a run stopped "
              "before its first snapshot starts over)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
