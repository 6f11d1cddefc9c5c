"""`wsrl sweep FILE`: tasks x methods x seeds x varied options, as one graph of dataset -> pre-training ->
fine-tuning runs executed on Ray (docs/sweeps.md).

    from wsrl.sweep import sweep
    outcomes = sweep("examples/sweep.toml")            # a local Ray instance
    sweep("study.toml", address="auto")                # an existing Ray cluster
    sweep(["a.toml", "b.toml"], tasks=["hopper-medium-local-v5"])   # one task's jobs (a chunk of a study)
"""

from __future__ import annotations

from pathlib import Path

from wsrl.errors import ConfigError
from wsrl.sweep.execute import Outcome, describe, execute, report_line
from wsrl.sweep.plan import MANIFEST, Job, Plan, expand, load

__all__ = ["sweep", "plan", "combine", "only_tasks", "Plan", "Job", "Outcome", "MANIFEST"]


def plan(source: str | Path | dict | list, root: str | Path | None = None, tasks: list[str] | None = None) -> Plan:
    """The validated graph of a sweep file (or of its content as a dict), without running anything. Several
    files (a list) sharing one root make one graph: a pre-training two files need is run once. `tasks`: only
    these tasks' jobs (the whole graph is still validated)."""
    if isinstance(source, list):
        graph = combine([plan(s, root) for s in source])
    elif isinstance(source, dict):
        graph = expand(source, root)
    else:
        graph = expand(load(source), root, source=str(Path(source).resolve()))
    return graph if tasks is None else only_tasks(graph, tasks)


def only_tasks(graph: Plan, tasks: list[str]) -> Plan:
    """The jobs of these tasks (names as the sweep files give them), so that a long study runs in chunks. The
    manifest keeps every run of the root: it describes the study, not the chunk."""
    known = sorted({job.task for job in graph.jobs})
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise ConfigError(f"tasks {','.join(unknown) or '(none)'} (--tasks): not a task of this sweep; its tasks "
                          f"are {', '.join(known)}")
    return Plan(graph.root, tuple(job for job in graph.jobs if job.task in tasks), graph.manifest)


def combine(plans: list[Plan]) -> Plan:
    """One graph of several sweeps with the same root; a job or run they share must be the same in each."""
    roots = {p.root for p in plans}
    if len(roots) != 1:
        raise ConfigError(f"sweep files run together must share one root, these have {', '.join(map(str, roots))}: "
                          f"give them the same `root`, or --root DIR")
    jobs, runs = {}, {}
    for p in plans:
        where = p.manifest["sweep_file"]
        for job in p.jobs:
            if jobs.setdefault(job.id, job) != job:
                raise ConfigError(f"{where}: its job {job.id!r} differs from another file's of the same name: give "
                                  f"the method another label")
        for row in p.manifest["runs"]:
            if runs.setdefault(row["dir"], row) != row:
                raise ConfigError(f"{where}: its run {row['dir']} differs from another file's run there: give the "
                                  f"method another label")
    vary = {k: v for p in plans for k, v in p.manifest["vary"].items()}
    manifest = {**plans[0].manifest, "sweep_file": [p.manifest["sweep_file"] for p in plans], "vary": vary,
                "runs": list(runs.values())}
    return Plan(plans[0].root, tuple(jobs.values()), manifest)


def sweep(source: str | Path | dict | list, *, root: str | Path | None = None, address: str | None = None,
          num_cpus: int | None = None, dry_run: bool = False, progress: bool = True,
          tasks: list[str] | None = None) -> list[Outcome]:
    """Run every job of the sweep (one file, or a list of files sharing a root) not yet finished (`dry_run`: print
    the graph instead) and return each job's outcome: done, skipped (finished before), failed (with its log) or
    blocked (a job it needs failed). `tasks`: only these tasks' jobs."""
    graph = plan(source, root, tasks)
    if dry_run:
        print(describe(graph))
        return []
    return execute(graph, address=address, num_cpus=num_cpus, progress=progress)
