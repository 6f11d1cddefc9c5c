"""A sweep's jobs executed on Ray: each job is one `wsrl` command run by a Ray task, after the tasks of the jobs it
needs. A local Ray instance is started by default; `address` joins an existing cluster.

Safe to re-run: a finished job is skipped, a started one continues with its runs' own `--resume`, and the
decision is taken by the task when it starts (so a task Ray retries after a lost worker resumes too). A failed
job is reported with its log and does not stop the others; the jobs that need it are skipped. One sweep at a
time writes a root (a lock held for the whole sweep), and a run directory is never reused for other options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

from wsrl.errors import ConfigError
from wsrl.io import atomic
from wsrl.sweep.plan import MANIFEST, Job, Plan, pending_jobs

LOCK_FILE, JAX_CACHE = ".sweep.lock", ".jax-cache"
# Variables the jobs need on every node (dataset locations, XLA settings), passed to a cluster's workers.
FORWARDED_ENV = ("WSRL_DATA_DIR", "MINARI_DATASETS_PATH", "XLA_FLAGS", "JAX_PLATFORMS")
PASSED_STATES = ("done", "skipped")


@dataclasses.dataclass
class Outcome:
    job: str
    status: str  # done, skipped (finished before), failed, blocked (a job it needs did not finish)
    log: str | None = None
    detail: str = ""
    seconds: float = 0.0  # wall time of the job's command


# ---- one job (runs inside a Ray task) -------------------------------------------------------------------------

def _die_with_parent() -> None:
    """The job's process is killed when the Ray worker running it dies, so a retried task finds no process still
    holding its run directories (Linux; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def run_job(job: Job, cwd: str, env: dict, *needed: Outcome) -> Outcome:
    """Run one job's command unless it is finished or a job it needs did not finish; `env` is added to the
    environment of the command."""
    blocked = [o.job for o in needed if o.status not in PASSED_STATES]
    if blocked:
        return Outcome(job.id, "blocked", detail=f"needs {', '.join(blocked)}")
    if job.has_outputs():  # a retried task whose first attempt finished
        return Outcome(job.id, "skipped", job.log)
    argv = list(job.argv) + (["--resume", "true"] if job.started() else [])
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "a") as log:
        log.write(f"$ wsrl {shlex.join(argv)}\n")
        log.flush()
        start = time.monotonic()
        code = subprocess.run([sys.executable, "-m", "wsrl", *argv], stdout=log, stderr=subprocess.STDOUT,
                              cwd=cwd if Path(cwd).is_dir() else None, env={**os.environ, **env},
                              preexec_fn=_die_with_parent).returncode
    seconds = time.monotonic() - start
    if code == 0 and job.has_outputs():
        return Outcome(job.id, "done", job.log, seconds=seconds)
    reason = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    return Outcome(job.id, "failed", job.log, reason if code else "exited without finishing its runs", seconds)


# ---- the root ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another `wsrl sweep` is running on {root}: wait for it to end, or give this sweep "
                              f"another root") from None
        yield


def merged_manifest(plan: Plan) -> dict:
    """The root's manifest with this sweep's runs added. A run directory the root already lists with other
    options, or one holding a run the manifest does not list, is refused before anything runs."""
    path = plan.root / MANIFEST
    old = json.loads(path.read_text()) if path.exists() else {"runs": []}
    listed = {row["dir"]: row for row in old.get("runs", [])}
    for row in plan.manifest["runs"]:
        before = listed.get(row["dir"])
        if before is not None and before.get("options") != row["options"]:
            raise ConfigError(f"{plan.root / row['dir']} holds a run of an earlier sweep with other options: give "
                              f"this sweep another root (or another label to the method), or delete that run")
        if before is None and (plan.root / row["dir"] / "config.json").exists():
            raise ConfigError(f"{plan.root / row['dir']} holds a run this root's {MANIFEST} does not list: give the "
                              f"sweep another root, or move that run away")
    rows = {**listed, **{row["dir"]: row for row in plan.manifest["runs"]}}
    return {**plan.manifest, "runs": list(rows.values())}


def describe(plan: Plan) -> str:
    """The graph, for --dry-run: each job's state, what it needs and its command line."""
    lines = [f"sweep root {plan.root}: {len(plan.jobs)} jobs"]
    pending = pending_jobs(plan.jobs)
    for job in plan.jobs:
        lines.append(f"[{job.state(job in pending):>6}] {job.id}")
        if job.needs:
            lines.append(f"           after: {'; '.join(job.needs)}")
        lines.append(f"           wsrl {shlex.join(job.argv)}")
    return "\n".join(lines)


# ---- the whole graph on Ray -----------------------------------------------------------------------------------

def start_ray(address: str | None, num_cpus: int | None):
    import ray
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    if address is None:
        # "local": a new instance for this sweep, even when a cluster runs on this machine (that one: --address auto)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    else:
        if num_cpus is not None:
            raise ConfigError("--num-cpus sizes the local Ray instance; a cluster (--address) has its own CPUs")
        ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=False,
                 logging_level="WARNING")
    return ray


def execute(plan: Plan, *, address: str | None = None, num_cpus: int | None = None,
            progress: bool = True) -> list[Outcome]:
    with locked(plan.root):
        manifest = merged_manifest(plan)
        with atomic.atomic_path(plan.root / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
        todo = pending_jobs(plan.jobs)
        outcomes = [Outcome(job.id, "skipped", job.log) for job in plan.jobs if job not in todo]
        if todo:
            outcomes += _on_ray(plan, todo, address, num_cpus, progress)
    return outcomes


def _on_ray(plan: Plan, todo: list[Job], address, num_cpus, progress) -> list[Outcome]:
    ray = start_ray(address, num_cpus)
    try:
        task = ray.remote(run_job)
        # Runs of one sweep compile the same functions: JAX's persistent cache under the root compiles each once
        # (a tiny fine-tuning run: 32 s -> 18 s, docs/sweeps.md).
        env = {"JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", str(plan.root / JAX_CACHE))}
        refs, by_ref = {}, {}
        for job in todo:  # plan order: a job's needs are submitted before it
            needed = [refs[n] for n in job.needs if n in refs]
            refs[job.id] = task.options(num_cpus=job.cpus, name=job.id).remote(job, os.getcwd(), env, *needed)
            by_ref[refs[job.id]] = job
        return _collect(ray, by_ref, progress)
    finally:
        ray.shutdown()


def _collect(ray, by_ref: dict, progress: bool) -> list[Outcome]:
    started_at, pending, outcomes = time.time(), list(by_ref), []
    counts = {"done": 0, "failed": 0, "blocked": 0}
    with tqdm(total=len(pending), unit="job", disable=not progress, dynamic_ncols=True) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=2.0)
            for ref in ready:
                job = by_ref[ref]
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # the task itself failed (lost worker after retries, cluster error)
                    outcome = Outcome(job.id, "failed", job.log, f"{type(err).__name__}: {err}".splitlines()[0])
                outcomes.append(outcome)
                counts["done" if outcome.status in PASSED_STATES else outcome.status] += 1
                if outcome.status != "done":
                    bar.write(report_line(outcome))
                bar.update(1)
            running = sum(_running(by_ref[ref], started_at) for ref in pending)
            bar.set_postfix_str(f"done {counts['done']}, running {running}, failed {counts['failed']}, "
                                f"blocked {counts['blocked']}")
    return outcomes


def _running(job: Job, since: float) -> bool:
    """A job writes its log as it starts; Ray gives no cheaper signal across nodes."""
    with contextlib.suppress(OSError):
        return os.path.getmtime(job.log) >= since
    return False


def report_line(outcome: Outcome) -> str:
    where = f" (log: {outcome.log})" if outcome.log and outcome.status == "failed" else ""
    detail = f": {outcome.detail}" if outcome.detail else ""
    return f"{outcome.status}: {outcome.job}{detail}{where}"
