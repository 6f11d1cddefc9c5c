"""`wsrl sweep FILE`: tasks x methods x seeds x varied options, as one graph of dataset -> pre-training ->
fine-tuning runs executed on Ray (docs/sweeps.md).

    from wsrl.sweep import sweep
    outcomes = sweep("examples/sweep.toml")            # a local Ray instance
    sweep("study.toml", address="auto")                # an existing Ray cluster
"""

from __future__ import annotations

from pathlib import Path

from wsrl.sweep.execute import Outcome, describe, execute, report_line
from wsrl.sweep.plan import MANIFEST, Job, Plan, expand, load

__all__ = ["sweep", "plan", "Plan", "Job", "Outcome", "MANIFEST"]


def plan(source: str | Path | dict, root: str | Path | None = None) -> Plan:
    """The validated graph of a sweep file (or of its content as a dict), without running anything."""
    if isinstance(source, dict):
        return expand(source, root)
    return expand(load(source), root, source=str(Path(source).resolve()))


def sweep(source: str | Path | dict, *, root: str | Path | None = None, address: str | None = None,
          num_cpus: int | None = None, dry_run: bool = False, progress: bool = True) -> list[Outcome]:
    """Run every job of the sweep not yet finished (`dry_run`: print the graph instead) and return each job's
    outcome: done, skipped (finished before), failed (with its log) or blocked (a job it needs failed)."""
    graph = plan(source, root)
    if dry_run:
        print(describe(graph))
        return []
    return execute(graph, address=address, num_cpus=num_cpus, progress=progress)
