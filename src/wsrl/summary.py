"""Results from run directories and sweep roots: find them, load them, group them by task and method (or by a
sweep's labels and varied options), and tabulate the final scores with stratified bootstrap confidence intervals
(docs/aggregation.md)."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from wsrl import stats
from wsrl.errors import WsrlError
from wsrl.io.runlog import CONFIG_FILE, METRICS_FILE, SWEEP_MANIFEST as MANIFEST, load_records
from wsrl.stats import iqm  # noqa: F401  (kept importable from here)

LEVEL, REPS = 0.95, 2000  # confidence level and bootstrap replicates of every interval in tables and figures
PRETRAIN_SUFFIX = " (pre-training)"


def find_runs(paths) -> list[Path]:
    """Every directory holding config.json and metrics.jsonl at or below the given paths."""
    found = []
    for path in map(Path, paths):
        candidates = [path] + sorted(p.parent for p in path.rglob(CONFIG_FILE)) if path.is_dir() else []
        found += [c for c in candidates if (c / CONFIG_FILE).is_file() and (c / METRICS_FILE).is_file()]
    return sorted(set(found))


def load_run(run_dir: Path) -> tuple[dict, list[dict]]:
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text()), load_records(run_dir)


def scores(records: list[dict]) -> list[tuple[int, float]]:
    return [(r["step"], r["score"]) for r in records if r.get("score") is not None]


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


# ---- sweep manifests ------------------------------------------------------------------------------------------

def read_manifest(root: Path) -> dict:
    """<root>/sweep.json, with each run's `dir` and `pretrain_dir` made absolute (they are stored relative to
    the root)."""
    path = Path(root) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        runs = manifest["runs"]
        for entry in runs:
            entry["dir"] = str((Path(root) / entry["dir"]).resolve())
            if entry.get("pretrain_dir"):
                entry["pretrain_dir"] = str((Path(root) / entry["pretrain_dir"]).resolve())
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise WsrlError(f"{path}: not a sweep manifest ({type(err).__name__}: {err})") from err
    manifest.setdefault("vary", {})
    return manifest


def sweep_root(run_dir: Path) -> Path | None:
    """The nearest folder at or above `run_dir` holding sweep.json."""
    for folder in [Path(run_dir).resolve(), *Path(run_dir).resolve().parents]:
        if (folder / MANIFEST).is_file():
            return folder
    return None


def variant_text(variant: dict) -> str:
    """{"warmup_steps": 1000, "utd": 4} -> "warmup_steps=1000, utd=4" (strings bare, other values as JSON)."""
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in variant.items())


def group_name(label: str, variant: dict | None = None, kind: str = "finetune") -> str:
    """A sweep group's name: the label, plus the varied options' values when there are any
    (`wsrl [warmup_steps=1000]`); pre-training groups end in " (pre-training)"."""
    name = f"{label} [{variant_text(variant)}]" if variant else label
    return name + PRETRAIN_SUFFIX if kind == "pretrain" else name


def _kind(config: dict) -> str:
    return "pretrain" if config.get("kind") == "pretrain" else "finetune"


def _method(config: dict) -> str:
    return config.get("method") or config.get("algorithm") or "unknown"


def _sweep_info(root: Path, manifest: dict, index: int) -> dict:
    entry = manifest["runs"][index]
    return {"root": str(root), "index": index, "task": entry["task"], "label": entry["label"],
            "method": entry.get("method"), "variant": dict(entry.get("variant") or {}), "seed": entry.get("seed"),
            "dir": entry["dir"], "pretrain_dir": entry.get("pretrain_dir")}


# ---- grouping -------------------------------------------------------------------------------------------------

def group_runs(run_dirs) -> dict[tuple[str, str], list[tuple[dict, list[dict]]]]:
    """Runs by (task, group name); each run is one seed, so two fine-tuning runs of one seed in a group are
    refused.

    A run listed in the manifest of a sweep root above it (sweep.json) is grouped by the manifest's task and by
    its label plus variant (`wsrl [warmup_steps=1000]`); its config gets a "sweep" entry (root, task, label,
    variant, seed, absolute dir and pretrain_dir, position in the manifest). Other runs are grouped by
    config.json's task and method. Pre-training runs form groups of their own, named "<name> (pre-training)".
    Groups come in the order of the sweep file (tasks, then labels and variants), then alphabetically."""
    manifests, groups, seen = {}, defaultdict(list), {}
    for run in map(Path, run_dirs):
        config, records = load_run(run)
        kind = _kind(config)
        root = sweep_root(run)
        info = None
        if root is not None:
            if root not in manifests:
                manifest = read_manifest(root)
                manifests[root] = (manifest, {e["dir"]: i for i, e in enumerate(manifest["runs"])})
            manifest, by_dir = manifests[root]
            index = by_dir.get(str(run.resolve()))
            if index is not None:
                info = _sweep_info(root, manifest, index)
        if info is not None:
            config = {**config, "sweep": info}
            key = (info["task"], group_name(info["label"], info["variant"], kind))
        else:
            key = (config["task"], group_name(_method(config), None, kind))
        seed_key = (kind, *key, config.get("seed"))
        if seed_key in seen and kind == "finetune":
            raise WsrlError(f"{seen[seed_key]} and {run} are both seed {config.get('seed')} of {key[1]} on "
                            f"{key[0]}: a seed counts once; pass the folders of one of them only")
        seen[seed_key] = run
        groups[key].append((config, records))
    rank = _ranks(groups, {})
    return {key: groups[key] for key in sorted(groups, key=lambda k: _order(k, rank))}


def _order(key: tuple[str, str], rank: dict) -> tuple:
    task, name = key
    return rank.get(task, math.inf), task, name.endswith(PRETRAIN_SUFFIX), rank.get(key, math.inf), name


def _listed(groups) -> dict[tuple[str, str], dict]:
    """The runs the sweep manifests list, by (task, group name): {"dirs": absolute directories, "variant",
    "index": first position in the manifest}. For each sweep, only runs under the folder that holds all of its
    given runs count (so that passing one task's folder does not count the other tasks' runs as missing)."""
    loaded = defaultdict(list)
    for runs in groups.values():
        for config, _ in runs:
            if "sweep" in config:
                loaded[config["sweep"]["root"]].append(config["sweep"]["dir"])
    listed = {}
    for root, dirs in loaded.items():
        scope = Path(os.path.commonpath(dirs))
        for index, entry in enumerate(read_manifest(Path(root))["runs"]):
            where = Path(entry["dir"])
            if where == scope or scope in where.parents:
                variant = dict(entry.get("variant") or {})
                key = (entry["task"], group_name(entry["label"], variant, entry.get("kind")))
                item = listed.setdefault(key, {"dirs": set(), "variant": variant, "index": index})
                item["dirs"].add(entry["dir"])
    return listed


def _ranks(groups, listed) -> dict:
    """Position in the sweep manifest of each task and each (task, group) first appears (inf outside sweeps)."""
    rank = {}
    found = [(key, config.get("sweep", {}).get("index", math.inf)) for key, runs in groups.items()
             for config, _ in runs] + [(key, item["index"]) for key, item in listed.items()]
    for key, index in found:
        rank[key[0]] = min(rank.get(key[0], math.inf), index)
        rank[key] = min(rank.get(key, math.inf), index)
    return rank


def table_kind(groups, listed=None) -> str:
    """The table shows fine-tuning runs; pre-training runs only when there is no fine-tuning run at all."""
    names = [name for _, name in [*groups, *(listed or {})]]
    return "finetune" if any(not n.endswith(PRETRAIN_SUFFIX) for n in names) or not names else "pretrain"


# ---- the table ------------------------------------------------------------------------------------------------

def summarize(run_dirs, *, groups=None, reps: int = REPS, level: float = LEVEL) -> list[dict]:
    """One row per (task, group) of fine-tuning runs (of pre-training runs when there is no fine-tuning run).

    Row keys: task, group (the name), label (method, kept under "method" too), variant, kind, seeds (runs with
    scores), listed (runs the sweep manifest lists for this group, None outside a sweep), missing (listed runs
    without scores), pretrained (mean step-0 score), final (mean of the final scores) with final_se (standard
    error) and final_low / final_high (bootstrap CI), iqm with iqm_low / iqm_high, best (mean over seeds of each
    seed's best score), auc (mean over seeds of each seed's mean score over its evaluations), and the per-seed
    finals, aucs and final_steps. A listed group with no scored run yet is a row with seeds 0 and NaN numbers.
    `groups`: group_runs(run_dirs) when already computed."""
    groups = group_runs(run_dirs) if groups is None else groups
    listed = _listed(groups)
    kind = table_kind(groups, listed)
    rank = _ranks(groups, listed)
    keys = [k for k in {**dict.fromkeys(groups), **dict.fromkeys(listed)}
            if k[1].endswith(PRETRAIN_SUFFIX) == (kind == "pretrain")]
    rows = []
    for key in sorted(keys, key=lambda k: _order(k, rank)):
        row = _row(key, groups.get(key, []), listed.get(key), reps, level)
        if row is not None:
            rows.append(row)
    return rows


def _row(key, runs, listed, reps, level) -> dict | None:
    task, name = key
    scored = [(config, scores(records)) for config, records in runs if scores(records)]
    if not scored and not listed:
        return None
    info = runs[0][0].get("sweep") if runs else None
    if info:
        label, variant = info["label"], dict(info["variant"])
    elif runs:
        label, variant = _method(runs[0][0]), {}
    else:
        label, variant = name.removesuffix(PRETRAIN_SUFFIX).split(" [")[0], dict(listed["variant"])
    done = {c["sweep"]["dir"] for c, _ in scored if "sweep" in c}
    row = {"task": task, "group": name, "method": label, "label": label, "variant": variant,
           "kind": "pretrain" if name.endswith(PRETRAIN_SUFFIX) else "finetune", "seeds": len(scored),
           "listed": len(listed["dirs"]) if listed else None, "missing": len(listed["dirs"] - done) if listed else 0}
    if not scored:
        nan = float("nan")
        return row | {"pretrained": nan, "final": nan, "final_se": nan, "final_low": nan, "final_high": nan,
                      "iqm": nan, "iqm_low": nan, "iqm_high": nan, "best": nan, "auc": nan, "finals": [],
                      "aucs": [], "final_steps": []}
    curves = [curve for _, curve in scored]
    finals = [c[-1][1] for c in curves]
    final, final_se = mean_se(finals)
    _, final_low, final_high = stats.bootstrap_ci([finals], stats.mean, reps, level)
    middle, iqm_low, iqm_high = stats.bootstrap_ci([finals], stats.iqm, reps, level)
    start = [c[0][1] for c in curves if c[0][0] == 0]
    aucs = [float(np.mean([s for _, s in c])) for c in curves]
    return row | {"pretrained": mean_se(start)[0] if start else float("nan"), "final": final,
                  "final_se": final_se, "final_low": final_low, "final_high": final_high, "iqm": middle,
                  "iqm_low": iqm_low, "iqm_high": iqm_high, "best": mean_se([max(s for _, s in c) for c in curves])[0],
                  "auc": float(np.mean(aucs)), "finals": finals, "aucs": aucs,
                  "final_steps": [c[-1][0] for c in curves]}


def aggregate(rows: list[dict], reps: int = REPS, level: float = LEVEL) -> tuple[list[dict], list[str]]:
    """Across tasks, per group: mean and IQM of the final scores of all tasks' runs pooled, each with a
    stratified bootstrap CI (runs resampled within each task). Only groups with scored runs on every task are
    aggregated; the others are returned by name as the second element."""
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["seeds"]))
    by_group = defaultdict(dict)
    for r in rows:
        if r["seeds"]:
            by_group[r["group"]][r["task"]] = r["finals"]
    names = list(dict.fromkeys(r["group"] for r in rows))
    result, left_out = [], []
    for name in names:
        finals = by_group.get(name, {})
        if not tasks or set(finals) != set(tasks):
            left_out.append(name)
            continue
        per_task = [finals[t] for t in tasks]
        mean, mean_low, mean_high = stats.bootstrap_ci(per_task, stats.mean, reps, level)
        middle, iqm_low, iqm_high = stats.bootstrap_ci(per_task, stats.iqm, reps, level)
        result.append({"group": name, "tasks": len(tasks), "runs": sum(map(len, per_task)), "mean": mean,
                       "mean_low": mean_low, "mean_high": mean_high, "iqm": middle, "iqm_low": iqm_low,
                       "iqm_high": iqm_high})
    return result, left_out


def _ci(point: float, low: float, high: float) -> str:
    return "—" if math.isnan(point) else f"{point:.1f} [{low:.1f}, {high:.1f}]"


def _num(value: float) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.1f}"


def _columns(header: list[str], body: list[list[str]], left: int) -> list[str]:
    """Left-align the first `left` columns, right-align the rest, two spaces between columns."""
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
            for cells in [header, *body]]


def format_table(rows: list[dict]) -> str:
    """The results table: per task and group, then across tasks (docs/aggregation.md explains the columns)."""
    if not rows:
        return "no runs with scores"
    pct = f"{LEVEL:.0%}"
    lines = []
    if rows[0].get("kind") == "pretrain":
        lines.append("pre-training runs (there is no fine-tuning run among the given runs)")
    body = []
    for r in rows:
        seeds = str(r["seeds"]) if r.get("listed") in (None, r["seeds"]) else f"{r['seeds']}/{r['listed']}"
        body.append([r["task"], r["group"], seeds, _num(r["pretrained"]),
                     _ci(r["final"], r["final_low"], r["final_high"]), _ci(r["iqm"], r["iqm_low"], r["iqm_high"]),
                     _num(r["best"])])
    lines += _columns(["task", "group", "seeds", "pre-trained", f"final mean [{pct} CI]", f"final IQM [{pct} CI]",
                       "best"], body, 2)

    tasks = list(dict.fromkeys(r["task"] for r in rows if r["seeds"]))
    summary, left_out = aggregate(rows)
    if len(tasks) > 1 and summary:
        lines += ["", f"across {len(tasks)} tasks (final scores; runs resampled within each task):"]
        lines += _columns(["group", "runs", f"mean [{pct} CI]", f"IQM [{pct} CI]"],
                          [[a["group"], str(a["runs"]), _ci(a["mean"], a["mean_low"], a["mean_high"]),
                            _ci(a["iqm"], a["iqm_low"], a["iqm_high"])] for a in summary], 1)
    if len(tasks) > 1 and left_out:
        lines.append(f"not aggregated (no scored runs on every task): {', '.join(left_out)}")

    notes = []
    for r in rows:
        if len(set(r["final_steps"])) > 1:
            notes.append(f"{r['group']} on {r['task']}: the runs' last evaluations are at steps "
                         f"{min(r['final_steps']):,}–{max(r['final_steps']):,} (unfinished runs?)")
    listed = sum(r["listed"] for r in rows if r.get("listed"))
    missing = sum(r.get("missing", 0) for r in rows)
    if missing:
        what = "pre-training" if rows[0].get("kind") == "pretrain" else "fine-tuning"
        notes.append(f"{missing} of the {listed} {what} runs listed in sweep.json {'has' if missing == 1 else 'have'} "
                     f"no scores yet (not run, running or failed): left out")
    if any(r["seeds"] == 1 for r in rows):
        notes.append("a group with 1 seed has an interval of zero width: it says nothing about the spread")
    return "\n".join(lines + ([""] + notes if notes else []))


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_summary(rows: list[dict], path) -> Path:
    """The table as JSON, one row per line: {"level", "reps", "rows": summarize's rows, "aggregate":
    aggregate's entries, "not_aggregated": group names}; NaN is written as null."""
    summary, left_out = aggregate(rows)

    def listing(items) -> str:
        return "[\n" + ",\n".join("  " + json.dumps(_plain(item)) for item in items) + "\n]" if items else "[]"

    path = Path(path)
    path.write_text(f'{{"level": {LEVEL}, "reps": {REPS},\n"rows": {listing(rows)},\n'
                    f'"aggregate": {listing(summary)},\n"not_aggregated": {json.dumps(left_out)}}}\n')
    return path
