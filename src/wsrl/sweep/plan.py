"""A sweep file expanded into its graph of jobs: dataset -> pre-training -> fine-tuning, no Ray and no training.

The file (TOML; docs/sweeps.md) holds command-line options. Each fine-tuning run's options are layered
`[options]` < the task's table < the method's table < one combination of `[vary]`; the pre-training it starts
from is derived from them as `wsrl run` derives it (`[pretrain]` adds pre-training-only options), so runs that
need the same pre-training share one. Seeds are grouped into the multi-seed runs of one process.

Layout under the root (names live here only):

    <root>/sweep.json                                   the manifest: every run's task, label, variant, seed, dir
    <root>/datasets/<task>.hdf5                         datasets the sweep generates ([data])
    <root>/<task>/pretrain/<algorithm>-<hash>/seed<s>/  pre-training runs, named by a hash of their options
    <root>/<task>/<label>[/<option>=<value>,...]/seed<s>/  fine-tuning runs
    <root>/logs/<job>.log                               each job's command line and output
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import re
import tomllib
from pathlib import Path

from wsrl import config as C
from wsrl.datagen.partial import partial_path
from wsrl.errors import ConfigError
from wsrl.io.runlog import SWEEP_MANIFEST as MANIFEST
from wsrl.train.run import CHECKPOINT_DIR, finished as run_finished, has_checkpoint

DATASETS_DIR, LOGS_DIR = "datasets", "logs"
TOP_KEYS = ("root", "tasks", "methods", "seeds", "seeds_per_process", "cpus_per_run", "data", "options", "pretrain",
            "vary")
RUN_EXTRAS = ("algorithm", "pretrain_steps")  # options of `wsrl run` that are not FinetuneConfig fields
SET_BY_SWEEP = ("seed", "seeds", "run_dir", "resume", "progress", "checkpoint", "label")
DATA_KEYS = ("recipe", "steps", "seed", "noise", "checkpoint")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclasses.dataclass(frozen=True)
class Job:
    id: str  # "<kind> <path under the root>", unique in the sweep
    kind: str  # data, pretrain, finetune
    argv: tuple[str, ...]  # the `wsrl` command line, without --resume
    outputs: tuple[str, ...]  # absolute: the dataset file, or one run directory per seed
    needs: tuple[str, ...]  # ids of the jobs whose outputs this one reads
    log: str  # absolute path of the job's log
    task: str  # the sweep file's name of the task the job belongs to
    cpus: float = 1.0

    def has_outputs(self) -> bool:
        """What the jobs after it read is on disk: the dataset file, or every seed's final checkpoint."""
        if self.kind == "data":
            return Path(self.outputs[0]).exists()
        return all(has_checkpoint(d) for d in self.outputs)

    def finished(self) -> bool:
        """Every seed's run is complete, checkpoint kept or not (`train.run.finished`)."""
        return self.has_outputs() if self.kind == "data" else all(run_finished(Path(d)) for d in self.outputs)

    def started(self) -> bool:
        """A run of the job was started (it continues with --resume): a run directory's config.json, or an
        interrupted generation beside a dataset (`<out>.partial`)."""
        if self.kind == "data":
            return partial_path(Path(self.outputs[0])).exists()
        return any((Path(d) / "config.json").exists() for d in self.outputs)

    def state(self, pending: bool) -> str:
        """For --dry-run: done, rerun (finished, but its checkpoints are gone and a pending job needs them),
        resume or new."""
        if not pending:
            return "done"
        return "rerun" if self.finished() else "resume" if self.started() else "new"


def pending_jobs(jobs) -> list:
    """The jobs a sweep runs: runs not finished; finished runs whose checkpoints are gone (a results tree kept
    without them) while a pending job needs them, which start over and write their metrics again; and datasets
    that are missing and needed (a dataset is an input, not a result).
    `jobs` in plan order (a job after the jobs it needs)."""
    pending = set()
    for job in reversed(jobs):
        after = [other for other in jobs if job.id in other.needs]
        needed = any(other.id in pending for other in after)
        if job.kind == "data":
            run = not job.has_outputs() and (needed or not after)
        else:
            run = not job.finished() or (needed and not job.has_outputs())
        if run:
            pending.add(job.id)
    return [job for job in jobs if job.id in pending]


@dataclasses.dataclass(frozen=True)
class Plan:
    root: Path
    jobs: tuple[Job, ...]  # in an order where every job comes after the jobs it needs
    manifest: dict


# ---- reading the file ---------------------------------------------------------------------------------------

def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {path} not found (docs/sweeps.md describes the format; examples/ has one)")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"sweep file {path}: not valid TOML ({err})") from None


def _unknown(where: str, keys, allowed) -> None:
    for key in keys:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; allowed: {', '.join(sorted(allowed))}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")


RUN_TYPES = {**C.option_types(C.FinetuneConfig), "algorithm": str, "pretrain_steps": int}
PRETRAIN_TYPES = C.option_types(C.PretrainConfig)


def _typed(where: str, name: str, value, kind):
    """A TOML value as the option's type; a value of another type is refused, never converted (an integer for
    a float option is exact and accepted)."""
    if value is None:
        return None
    if kind is tuple and isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                                         for v in value):
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    shown = {tuple: "a list of integers", dict: "a table"}.get(kind, kind.__name__)
    raise ConfigError(f"{where}: {name} = {value!r} must be {shown}")


def _options(where: str, table, types: dict, exclude=SET_BY_SWEEP) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table of options")
    allowed = [k for k in types if k not in exclude]
    for key in table:
        if key in exclude:
            raise ConfigError(f"{where}: {key} is set by the sweep itself (seeds come from `seeds`, run "
                              f"directories from `root`); remove it")
    _unknown(where, table, allowed)
    return {k: _typed(where, k, v, types[k]) for k, v in table.items()}


def _named_tables(spec: dict, key: str, name_field: str) -> dict[str, dict]:
    """`tasks` / `methods`: a list of names, or a table of name -> options."""
    value = spec.get(key)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        tables = {name: {} for name in value}
        if len(tables) != len(value):
            raise ConfigError(f"{key} lists a name twice: {value}")
    elif isinstance(value, dict) and value:
        tables = value
    else:
        raise ConfigError(f"`{key}` must be a non-empty list of {name_field} names, or a table of name -> options")
    for name, table in tables.items():
        if not SAFE_NAME.match(name):
            raise ConfigError(f"{key}: {name!r} names folders: letters, digits, '.', '_', '+' and '-' only")
        if not isinstance(table, dict):
            raise ConfigError(f"{key}.{name} must be a table of options")
    return tables


def _seeds(spec: dict) -> tuple[int, ...]:
    seeds = spec.get("seeds")
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                      for s in seeds) and len(set(seeds)) == len(seeds)):
        raise ConfigError(f"`seeds` must be a non-empty list of distinct integers >= 0, e.g. [0, 1, 2]; got {seeds!r}")
    return tuple(seeds)


def _vary(spec: dict) -> dict[str, list]:
    vary = spec.get("vary", {})
    if not isinstance(vary, dict):
        raise ConfigError("[vary] must be a table of option -> list of values")
    _unknown("[vary]", vary, [k for k in RUN_TYPES if k not in SET_BY_SWEEP])
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"[vary] {key} must be a non-empty list of values, e.g. {key} = [0, 1000]")
        typed = [_typed("[vary]", key, v, RUN_TYPES[key]) for v in values]
        if len({json.dumps(v) for v in typed}) != len(typed):
            raise ConfigError(f"[vary] {key} lists a value twice: {values}")
    return {k: [_typed("[vary]", k, v, RUN_TYPES[k]) for v in values] for k, values in vary.items()}


# ---- command lines ------------------------------------------------------------------------------------------

def _word(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _given(cfg) -> dict:
    """The fields of a config that are not at their defaults."""
    given = {}
    for f in dataclasses.fields(cfg):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if getattr(cfg, f.name) != default:
            given[f.name] = getattr(cfg, f.name)
    return given


def config_argv(cfg) -> list[str]:
    """The options that reproduce `cfg` on `wsrl pretrain` / `wsrl finetune`: every field not at its default."""
    words = []
    for name, value in _given(cfg).items():
        if value is None:
            raise ConfigError(f"{name} = None cannot be passed on the command line (its default is not None)")
        words += ["--" + name.replace("_", "-"), _word(value)]
    return words


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(C.to_jsonable(data), sort_keys=True).encode()).hexdigest()[:8]


def _identity(cfg, root: Path | None = None, **changes) -> str:
    """The digest naming what a run computes: its options that differ from their defaults (as its command line
    gives them; an option added to wsrl later, at its default, keeps existing digests), leaving out those that do
    not change results (progress display, snapshot spacing), so that changing them reuses finished runs. Paths
    under `root` are written relative to it, so that a moved root keeps its digests."""
    given = {k: v for k, v in _given(dataclasses.replace(cfg, **changes)).items()
             if k not in ("progress", "save_interval")}
    text = json.dumps(C.to_jsonable(given), sort_keys=True)
    return _digest(text.replace(str(root), "<root>") if root is not None else text)


def _variant_dir(variant: dict) -> str:
    return ",".join(f"{k}={_word(v).replace(',', 'x')}" for k, v in variant.items())


# ---- expansion ----------------------------------------------------------------------------------------------

def _data_job(root: Path, task_name: str, task_opts: dict, data: dict, log_dir: Path) -> tuple[Job, str]:
    from wsrl.datagen import user_env_words
    from wsrl.tasks import get_task
    table = {**data, **task_opts.get("data", {})}
    _unknown(f"[data] of task {task_name}", table, DATA_KEYS)
    if "steps" not in table:
        raise ConfigError(f"[data] needs steps = N, the number of transitions to generate for each task")
    out = root / DATASETS_DIR / f"{task_name}.hdf5"
    if task_opts.get("env") is not None:
        recipe, words = table.get("recipe", "random"), user_env_words(task_opts)
    else:
        task = get_task(task_opts["task"])
        recipe, words = table.get("recipe", task.datagen_recipe), ["--task", task.name]
        if recipe is None:
            raise ConfigError(f"task {task_name}: no recipe generates its data here; give the task a dataset = "
                              f"FILE ({task.dataset_hint})")
    argv = ["datagen", *words, "--recipe", str(recipe), "--out", str(out), "--quiet"]
    for key in ("steps", "seed", "noise", "checkpoint"):
        if key in table:
            value = str(Path(table[key]).resolve()) if key == "checkpoint" else _word(table[key])
            argv += ["--" + key, value]
    job_id = f"data {DATASETS_DIR}/{task_name}"
    log = str(log_dir / f"data-{task_name}.log")
    return Job(job_id, "data", tuple(argv), (str(out),), (), log, task_name), str(out)


def _task_options(name: str, table: dict) -> dict:
    opts = dict(table)
    data = opts.pop("data", None)
    opts = _options(f"tasks.{name}", opts, RUN_TYPES)
    if opts.get("env") is None and opts.get("task") is None:
        opts["task"] = name
    if opts.get("dataset") is not None and not C.names_minari_dataset(opts["dataset"]):
        opts["dataset"] = str(Path(opts["dataset"]).resolve())
    if data is not None:
        if not isinstance(data, dict):
            raise ConfigError(f"tasks.{name}.data must be a table (recipe, steps, seed, noise, checkpoint)")
        opts["data"] = data
    return opts


def _merge(layers: list[tuple[str, dict]], vary_where: str, combo: dict) -> dict:
    merged = {}
    for _, layer in layers:
        merged.update(layer)
    for key in combo:
        setters = [where for where, layer in layers[1:] if key in layer]
        if setters:
            raise ConfigError(f"{key} is varied in [vary] and also set in {' and '.join(setters)}; set it in one "
                              f"place ({vary_where})")
    merged.update(combo)
    return merged


def _chunks(seeds: tuple[int, ...], size: int | None) -> list[tuple[int, ...]]:
    size = size or len(seeds)
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def expand(spec: dict, root: str | Path | None = None, source: str = "<python>") -> Plan:
    """The graph of a sweep file's content (`load`), validated before anything runs: every option is checked as
    `wsrl run` checks it, and each method is checked against the pre-training it will start from."""
    from wsrl.api import check_stages_fit
    from wsrl.tasks import resolve_task

    _unknown(source, spec, TOP_KEYS)
    root = Path(root if root is not None else spec.get("root", f"runs/sweep-{Path(source).stem}")).resolve()
    seeds = _seeds(spec)
    per_process = spec.get("seeds_per_process")
    if per_process is not None and not (isinstance(per_process, int) and per_process >= 1):
        raise ConfigError(f"seeds_per_process = {per_process!r} must be an integer >= 1")
    cpus = spec.get("cpus_per_run", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
        raise ConfigError(f"cpus_per_run = {cpus!r} must be a number > 0")
    tasks = {name: _task_options(name, t) for name, t in _named_tables(spec, "tasks", "task").items()}
    methods = {label: _options(f"methods.{label}", t, RUN_TYPES) for label, t in
               _named_tables(spec, "methods", "method").items()}
    options = _options("[options]", spec.get("options", {}), RUN_TYPES)
    pretrain_options = _options("[pretrain]", spec.get("pretrain", {}), PRETRAIN_TYPES,
                                exclude=SET_BY_SWEEP + ("steps", "algorithm"))
    data = spec.get("data")
    if data is not None and not isinstance(data, dict):
        raise ConfigError("[data] must be a table (recipe, steps, seed, noise, checkpoint)")
    vary = _vary(spec)
    logs = root / LOGS_DIR

    jobs: dict[str, Job] = {}
    rows = []
    for task_name, task_opts in tasks.items():
        task_opts = dict(task_opts)
        task_data = task_opts.pop("data", None)
        data_need = ()
        if task_opts.get("dataset") is None and (data is not None or task_data is not None):
            job, task_opts["dataset"] = _data_job(root, task_name, {**task_opts, "data": task_data or {}},
                                                  data or {}, logs)
            jobs[job.id], data_need = job, (job.id,)
        for label, method_opts in methods.items():
            for values in itertools.product(*vary.values()):
                combo = dict(zip(vary, values))
                merged = _merge([("[options]", options), (f"tasks.{task_name}", task_opts),
                                 (f"methods.{label}", method_opts)], "[vary]", combo)
                merged.setdefault("method", label)
                algorithm, pretrain_steps = (merged.pop(k, None) for k in RUN_EXTRAS)
                where = f"task {task_name}, method {label}" + (f", {_variant_dir(combo)}" if combo else "")
                for group in _chunks(seeds, per_process):
                    finetune_dir = root / task_name / label / _variant_dir(combo) if combo else root / task_name / label
                    cfg = _config(C.FinetuneConfig, where, merged, label=label, seeds=group, progress=False,
                                  run_dir=str(finetune_dir / "seed{seed}"))
                    needs, pretrain_template = data_need, None
                    if C.needs_pretraining(cfg):
                        pre = C.pretrain_config_for(cfg, algorithm, pretrain_steps)
                        pre = _config(C.PretrainConfig, where, {**dataclasses.asdict(pre), **pretrain_options})
                        # the family's default algorithm named, so that runs needing the same pre-training share it
                        algo = C.pretrain_algorithm(pre, C.PRESETS[resolve_task(cfg).preset])
                        pre = dataclasses.replace(pre, algorithm=algo)
                        identity = _identity(pre, root, seeds=None, seed=0, run_dir=None)
                        pretrain_dir = root / task_name / "pretrain" / f"{algo}-{identity}"
                        pretrain_template = str(pretrain_dir / "seed{seed}")
                        pre = dataclasses.replace(pre, seeds=group, run_dir=pretrain_template)
                        _checked(where, check_stages_fit, cfg, pre)
                        pjob = _run_job(root, task_name, "pretrain", pre, pretrain_dir, group, data_need, logs, cpus)
                        jobs.setdefault(pjob.id, pjob)
                        needs = (pjob.id,)
                        cfg = dataclasses.replace(cfg, checkpoint=f"{pretrain_template}/{CHECKPOINT_DIR}")
                    else:
                        _checked(where, _check_scratch, cfg)
                    fjob = _run_job(root, task_name, "finetune", cfg, finetune_dir, group, needs, logs, cpus)
                    if fjob.id in jobs:
                        raise ConfigError(f"two runs of the sweep would write {finetune_dir}: give the methods "
                                          f"different labels")
                    jobs[fjob.id] = fjob
                    for seed in group:
                        rows.append(_row("finetune", task_name, label, cfg, combo, seed, finetune_dir, root,
                                         pretrain_template))
                        if pretrain_template:
                            rows.append(_row("pretrain", task_name, algo, pre, {}, seed, pretrain_dir, root, None))
    unique_rows = list({row["dir"]: row for row in rows}.values())
    manifest = {"version": 1, "sweep_file": source, "vary": vary, "runs": unique_rows}
    return Plan(root, tuple(jobs.values()), manifest)


def _config(cls, where: str, values: dict, **fixed):
    try:
        return cls(**{**values, **fixed})
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _checked(where: str, check, *args) -> None:
    try:
        check(*args)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_scratch(cfg: C.FinetuneConfig) -> None:
    from wsrl.tasks import resolve_task
    task = resolve_task(cfg)
    C.validate_common(cfg)
    C.resolve_finetune(cfg, C.PRESETS[task.preset], task.max_episode_steps)


def _run_job(root: Path, task: str, kind: str, cfg, run_dir: Path, seeds: tuple[int, ...],
             needs: tuple[str, ...], logs: Path, cpus: float) -> Job:
    path = run_dir.relative_to(root).as_posix()
    job_id = f"{kind} {path} seeds {_word(seeds)}"
    log = logs / (f"{kind}-{path}-seeds{'-'.join(map(str, seeds))}".replace("/", "-") + ".log")
    outputs = tuple(str(run_dir / f"seed{s}") for s in seeds)
    return Job(job_id, kind, (kind, *config_argv(cfg)), outputs, needs, str(log), task, float(cpus))


def _row(kind, task, label, cfg, variant, seed, run_dir: Path, root: Path, pretrain_template) -> dict:
    """One seed's run in the manifest; `options` is a digest of what the run computes (its single-seed config,
    the root's path left out), so that a run directory is never reused for different options."""
    seed_dir = run_dir / f"seed{seed}"
    pretrain_dir = (Path(pretrain_template.replace("{seed}", str(seed))).relative_to(root).as_posix()
                    if pretrain_template else None)
    return {"kind": kind, "task": task, "label": label, "method": getattr(cfg, "method", None), "variant": variant,
            "seed": seed, "dir": seed_dir.relative_to(root).as_posix(), "pretrain_dir": pretrain_dir,
            "options": _identity(C.for_seed(cfg, seed, seed_dir), root)}
