"""`wsrl sweep`: the graph a sweep file expands to, bad files refused, and a tiny sweep on a real local Ray instance
(a run killed mid-way reported with its log, the re-run skipping finished jobs and resuming the killed run)."""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsrl import cli
from wsrl import config as C
from wsrl.errors import ConfigError
from wsrl.sweep import plan as plan_of
from wsrl.sweep.execute import LOCK_FILE, Outcome, locked, merged_manifest, run_job
from wsrl.sweep.plan import MANIFEST, Job, config_argv, load, pending_jobs

MAZE, PLAIN = "pointmaze-umaze-repeat4-v0", "pointmaze-umaze-v0"
TINY = {"steps": 1000, "pretrain_steps": 50, "critic_hidden_dims": [16, 16],
        "actor_hidden_dims": [16, 16], "num_critics": 2, "layer_norm": True, "eval_interval": 100,
        "eval_episodes": 2, "save_interval": 100, "diagnostic_samples": 200}


def spec(**changes) -> dict:
    base = {"tasks": [MAZE, PLAIN], "methods": {"wsrl": {"warmup_steps": 100}, "calql-ft": {}}, "seeds": [0, 1],
            "data": {"steps": 2000},
            "options": dict(TINY)}
    return {**base, **changes}


def test_graph_shares_pretraining_and_orders_jobs(tmp_path):
    graph = plan_of(spec(vary={"freeze_policy_steps": [100, 200]}), root=tmp_path)
    kinds = [job.kind for job in graph.jobs]
    # per task: one dataset, one pre-training shared by both methods (same options, LayerNorm on), 2 x 2 runs
    assert kinds.count("data") == 2 and kinds.count("pretrain") == 2 and kinds.count("finetune") == 8
    position = {job.id: i for i, job in enumerate(graph.jobs)}
    for job in graph.jobs:
        assert all(position[need] < position[job.id] for need in job.needs)
    wsrl_job = next(j for j in graph.jobs if j.id == f"finetune {MAZE}/wsrl/freeze_policy_steps=200 seeds 0,1")
    (pretrain_id,) = wsrl_job.needs
    assert pretrain_id.startswith(f"pretrain {MAZE}/pretrain/cal-ql-")
    assert wsrl_job.outputs == tuple(str(tmp_path / MAZE / "wsrl" / "freeze_policy_steps=200" / f"seed{s}")
                                     for s in (0, 1))
    rows = [r for r in graph.manifest["runs"] if r["kind"] == "finetune"]
    assert len(rows) == 2 * 2 * 2 * 2 and graph.manifest["vary"] == {"freeze_policy_steps": [100, 200]}
    row = next(r for r in rows if r["dir"] == f"{MAZE}/calql-ft/freeze_policy_steps=100/seed1")
    assert row["variant"] == {"freeze_policy_steps": 100} and row["method"] == "calql-ft" and row["seed"] == 1
    assert (tmp_path / row["pretrain_dir"]).parent.name == pretrain_id.split("/")[-1].split()[0]


@pytest.mark.parametrize("example", sorted((Path(__file__).parents[1] / "examples").glob("*.toml")),
                         ids=lambda p: p.name)
def test_the_example_sweep_files_expand(tmp_path, example):
    graph = plan_of(example, root=tmp_path)
    assert [j.kind for j in graph.jobs].count("data") == 1 and any(j.kind == "finetune" for j in graph.jobs)
    assert len([j for j in graph.jobs if j.kind == "pretrain"]) == 1  # one pre-training shared by every run


def test_the_study_files_make_one_graph(tmp_path):
    """studies/*.toml (docs/results.md) run as one graph: the ablation files' `wsrl` is the main file's run, each
    task's pre-trainings are made once, and every run has the study's 5 seeds."""
    files = sorted((Path(__file__).parents[1] / "studies").glob("*.toml"))
    graph = plan_of(files, root=tmp_path)
    tasks = {j.task for j in graph.jobs}
    assert len(tasks) >= 4
    assert {j.task for j in graph.jobs if "/calql-ft" in j.id} == {"halfcheetah-medium-local-v5"}
    for task in tasks:  # WSRL's (IQL, its policy mean tanh-squashed), IQL's, and Cal-QL's where it runs, once
        pretrain = [j for j in graph.jobs if j.kind == "pretrain" and j.task == task]
        algorithms = sorted(j.argv[j.argv.index("--algorithm") + 1] for j in pretrain)
        calql = any(j.id.startswith(f"finetune {task}/calql-ft") for j in graph.jobs)
        assert algorithms == ["cal-ql"] * calql + ["iql", "iql"]
        assert sum("--iql-tanh-mean" in j.argv for j in pretrain) == 1
    runs = graph.manifest["runs"]
    assert {r["seed"] for r in runs} == {0, 1, 2, 3, 4}
    assert len({r["dir"] for r in runs if r["label"] == "wsrl"}) == 5 * len(tasks)


def test_files_with_one_root_make_one_graph_sharing_pretraining(tmp_path, capsys):
    main = spec(tasks=[MAZE], methods={"wsrl": {"warmup_steps": 100}})
    ablation = spec(tasks=[MAZE], methods={"wsrl-init": {"method": "wsrl", "warmup_steps": 100}},
                    vary={"init": ["policy", "critic"]})
    files = []
    for name, content in (("main", main), ("ablation", ablation)):
        files.append(tmp_path / f"{name}.toml")
        files[-1].write_text(_toml(content))
    alone = [plan_of(f, root=tmp_path / "out") for f in files]
    graph = plan_of(files, root=tmp_path / "out")
    # the dataset and the Cal-QL pre-training both files need run once; every fine-tuning run of each file is there
    assert [j.kind for j in graph.jobs].count("pretrain") == 1 and [j.kind for j in graph.jobs].count("data") == 1
    assert {j.id for j in graph.jobs} == {j.id for p in alone for j in p.jobs}
    assert len(graph.manifest["runs"]) == len({r["dir"] for p in alone for r in p.manifest["runs"]})
    assert graph.manifest["vary"] == {"init": ["policy", "critic"]}
    assert graph.manifest["sweep_file"] == [str(f.resolve()) for f in files]
    with pytest.raises(ConfigError, match="share one root"):
        plan_of([load(files[0]) | {"root": str(tmp_path / "a")}, load(files[1]) | {"root": str(tmp_path / "b")}])
    assert cli.main(["sweep", *map(str, files), "--root", str(tmp_path / "out"), "--dry-run"]) == 0
    assert capsys.readouterr().out.count(f"] pretrain {MAZE}/pretrain/cal-ql-") == 1  # listed once, needed by 3
    clash = spec(tasks=[MAZE], methods={"wsrl": {"warmup_steps": 200}})  # same label, other options
    (tmp_path / "clash.toml").write_text(_toml(clash))
    with pytest.raises(ConfigError, match="another label"):
        plan_of([files[0], tmp_path / "clash.toml"], root=tmp_path / "out")


def test_tasks_select_one_tasks_jobs_and_keep_the_whole_manifest(tmp_path, capsys):
    whole = plan_of(spec(), root=tmp_path)
    chunk = plan_of(spec(), root=tmp_path, tasks=[PLAIN])
    # every job of PLAIN (its dataset, pre-training and fine-tuning runs) and nothing of MAZE
    assert {j.id for j in chunk.jobs} == {j.id for j in whole.jobs if PLAIN in j.id and MAZE not in j.id}
    assert {j.kind for j in chunk.jobs} == {"data", "pretrain", "finetune"}
    assert all(need in {j.id for j in chunk.jobs} for j in chunk.jobs for need in j.needs)
    assert chunk.manifest == whole.manifest
    with pytest.raises(ConfigError, match=r"hopper-medium-v2 \(--tasks\): not a task of this sweep; its tasks are"):
        plan_of(spec(), root=tmp_path, tasks=[PLAIN, "hopper-medium-v2"])
    (tmp_path / "s.toml").write_text(_toml(spec()))
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--root", str(tmp_path), "--tasks", MAZE, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"pretrain {MAZE}/" in out and f"{PLAIN}/" not in out


def _toml(content: dict) -> str:
    """A sweep spec as TOML (the few value types sweep files use)."""
    def value(v):
        return json.dumps(v)  # strings, numbers, booleans and lists of them read the same in TOML
    lines = [f"{k} = {value(v)}" for k, v in content.items() if not isinstance(v, dict)]
    for table, body in ((k, v) for k, v in content.items() if isinstance(v, dict)):
        nested = {k: v for k, v in body.items() if isinstance(v, dict)}
        lines += [f"[{table}]"] + [f"{k} = {value(v)}" for k, v in body.items() if not isinstance(v, dict)]
        for name, sub in nested.items():
            lines += [f"[{table}.{name}]"] + [f"{k} = {value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def test_job_command_lines_parse_back_to_the_same_config(tmp_path):
    graph = plan_of(spec(methods={"no-warmup": {"method": "wsrl", "warmup_source": "none", "update_after": 64}}),
                    root=tmp_path)
    for job in graph.jobs:
        if job.kind == "finetune":
            args = cli.build_parser().parse_args(list(job.argv))
            cfg = cli.dataclass_from_args(C.FinetuneConfig, args)
            assert cfg.label == "no-warmup" and cfg.method == "wsrl" and cfg.warmup_source == "none"
            assert cfg.seeds == (0, 1) and cfg.critic_hidden_dims == (16, 16) and cfg.layer_norm is True
            assert cfg.checkpoint.endswith("seed{seed}/checkpoint") and cfg.progress is False
            assert config_argv(cfg) == list(job.argv[1:])


def test_seeds_per_process_splits_groups_and_keeps_pretraining_per_group(tmp_path):
    graph = plan_of(spec(tasks=[MAZE], methods=["wsrl"], seeds=[0, 1, 2], seeds_per_process=2), root=tmp_path)
    finetunes = [j for j in graph.jobs if j.kind == "finetune"]
    assert [len(j.outputs) for j in finetunes] == [2, 1]
    pretrains = {j.id: j for j in graph.jobs if j.kind == "pretrain"}
    assert [pretrains[j.needs[0]].outputs[-1][-5:] for j in finetunes] == ["seed1", "seed2"]


def test_your_own_environments_as_sweep_tasks(tmp_path):
    from pendulum import ENV, write_d4rl
    write_d4rl(tmp_path / "pendulum.hdf5", horizon=50, steps=200)
    tasks = {"pendulum": {"env": ENV, "family": "locomotion", "dataset": str(tmp_path / "pendulum.hdf5"),
                          "env_kwargs": {"reset_noise_scale": 0.02}},
             "pendulum-made": {"env": ENV, "family": "locomotion", "max_episode_steps": 50,
                               "data": {"recipe": "random", "steps": 300}}}
    graph = plan_of(spec(tasks=tasks, methods=["wsrl"], data=None), root=tmp_path / "root")
    data_jobs = [j for j in graph.jobs if j.kind == "data"]
    assert [j.id for j in data_jobs] == ["data datasets/pendulum-made"]  # the other task brings its dataset
    words = list(data_jobs[0].argv)
    assert words[:4] == ["datagen", "--env", ENV, "--family"] and "random" in words and "300" in words
    for job in graph.jobs:
        if job.kind != "data":
            cfg = cli.dataclass_from_args(C.PretrainConfig if job.kind == "pretrain" else C.FinetuneConfig,
                                          cli.build_parser().parse_args(list(job.argv)))
            assert cfg.env == ENV and cfg.family == "locomotion" and cfg.task is None
            if "pendulum-made" in job.id:
                assert cfg.dataset == str(tmp_path / "root" / "datasets" / "pendulum-made.hdf5")
                assert cfg.max_episode_steps == 50
            else:
                assert cfg.env_kwargs == {"reset_noise_scale": 0.02}
    assert {r["task"] for r in graph.manifest["runs"]} == {"pendulum", "pendulum-made"}


@pytest.mark.parametrize("changes, message", [
    ({"option": {}}, "unknown key 'option'; did you mean options"),
    ({"options": {**TINY, "warmup_step": 5}}, "unknown key 'warmup_step'; did you mean warmup_steps"),
    ({"options": {**TINY, "steps": "1000"}}, "steps = '1000' must be int"),
    ({"options": {**TINY, "seeds": [0]}}, "seeds is set by the sweep itself"),
    ({"seeds": [0, 0]}, "distinct integers"),
    ({"tasks": ["no-such-task"]}, "unknown task 'no-such-task'"),
    ({"methods": ["wsrll"]}, "unknown method"),
    ({"methods": {"wsrl": {"warmup_steps": 10}}, "vary": {"warmup_steps": [0, 5]}}, "varied in [vary] and also set"),
    ({"options": {**TINY, "warmup_steps": 10}}, "method calql-ft: warmup_steps=10 with warmup source 'none'"),
    ({"vary": {"utd": []}}, "non-empty list"),
    ({"data": {"stepz": 10}}, "unknown key 'stepz'"),
    ({"options": {**TINY, "discount": 1.5}}, "discount=1.5 must be in [0, 1)"),
])
def test_bad_sweep_files_are_refused_with_the_key_named(tmp_path, changes, message):
    with pytest.raises(ConfigError) as err:
        plan_of(spec(**changes), root=tmp_path)
    assert message in str(err.value)
    assert not (tmp_path / MANIFEST).exists()


def test_missing_or_broken_file_and_dry_run(tmp_path, capsys):
    assert cli.main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.toml"
    broken.write_text("tasks = [\n")
    assert cli.main(["sweep", str(broken)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(f'root = "{tmp_path / "root"}"\ntasks = ["{MAZE}"]\nmethods = ["wsrl"]\nseeds = [3]\n'
                    f'[data]\nsteps = 100\n[options]\nsteps = 200\n')
    assert cli.main(["sweep", str(good), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"[   new] finetune {MAZE}/wsrl seeds 3" in out and "wsrl datagen --task" in out
    assert not (tmp_path / "root").exists()


def test_a_root_is_written_by_one_sweep_and_its_runs_keep_their_options(tmp_path):
    graph = plan_of(spec(tasks=[MAZE], methods=["wsrl"]), root=tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps(merged_manifest(graph)))
    other = plan_of(spec(tasks=[MAZE], methods=["wsrl"], options={**TINY, "utd": 2}), root=tmp_path)
    with pytest.raises(ConfigError, match="holds a run of an earlier sweep with other options"):
        merged_manifest(other)
    # snapshot spacing does not change what a run computes: the same runs and pre-training directories
    spaced = plan_of(spec(tasks=[MAZE], methods=["wsrl"], options={**TINY, "save_interval": 50}), root=tmp_path)
    assert merged_manifest(spaced)["runs"] == graph.manifest["runs"]
    assert [job.outputs for job in spaced.jobs] == [job.outputs for job in graph.jobs]
    stray = tmp_path / "elsewhere"
    (stray / MAZE / "wsrl" / "seed0").mkdir(parents=True)
    (stray / MAZE / "wsrl" / "seed0" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="does not list"):
        merged_manifest(plan_of(spec(tasks=[MAZE], methods=["wsrl"]), root=stray))
    with locked(tmp_path):
        with pytest.raises(ConfigError, match="another `wsrl sweep` is running"):
            with locked(tmp_path):
                pass
    assert (tmp_path / LOCK_FILE).exists()


def test_a_job_runs_its_command_and_reports_failure_with_its_log(tmp_path):
    graph = plan_of(spec(tasks=[MAZE], methods=["wsrl"], data={"steps": 2000, "recipe": "no-such-recipe"}),
                    root=tmp_path)
    data_job, pretrain_job = graph.jobs[:2]
    blocked = run_job(pretrain_job, str(tmp_path), {}, Outcome(data_job.id, "failed"))
    assert blocked.status == "blocked" and blocked.detail == f"needs {data_job.id}"
    assert not Path(pretrain_job.log).exists()  # nothing ran
    failed = run_job(data_job, str(tmp_path), {})
    assert failed.status == "failed" and failed.detail == "exit code 2" and failed.log == data_job.log
    log = Path(data_job.log).read_text()
    assert log.startswith("$ wsrl datagen --task") and "no-such-recipe" in log.splitlines()[-1]


def _run_dir(path: Path, steps: int, last: int, checkpoint: bool = False, state: bool = False) -> str:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"steps": steps}))
    (path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in range(0, last + 1, 10)))
    if checkpoint:
        (path / "checkpoint").mkdir()
        (path / "checkpoint" / "checkpoint.json").write_text("{}")
    if state:
        (path / "state").mkdir()
    return str(path)


def test_finished_runs_without_checkpoints_run_again_only_when_a_pending_run_needs_them(tmp_path):
    def job(name, kind, outputs, needs=()):
        return Job(name, kind, (kind,), tuple(outputs), tuple(needs), "log", "task")
    data = job("data", "data", [str(tmp_path / "data.hdf5")])  # missing
    kept = job("pre-kept", "pretrain", [_run_dir(tmp_path / "p1", 20, 20)], ["data"])  # finished, no checkpoint
    done = job("ft-done", "finetune", [_run_dir(tmp_path / "f1", 30, 30)], ["pre-kept"])
    needed = job("pre-needed", "pretrain", [_run_dir(tmp_path / "p2", 20, 20)], ["data"])
    new = job("ft-new", "finetune", [str(tmp_path / "f2")], ["pre-needed"])
    cut = job("ft-cut", "finetune", [_run_dir(tmp_path / "f3", 30, 20)], ["pre-kept"])  # stopped at step 20
    stale = job("ft-stale", "finetune", [_run_dir(tmp_path / "f4", 30, 30, state=True)])  # killed after its last log
    ckpt = job("ft-ckpt", "finetune", [_run_dir(tmp_path / "f5", 30, 20, checkpoint=True)])
    jobs = [data, kept, done, needed, new, cut, stale, ckpt]
    assert [j.finished() for j in jobs] == [False, True, True, True, False, False, False, True]
    assert [j.id for j in pending_jobs(jobs)] == ["data", "pre-kept", "pre-needed", "ft-new", "ft-cut", "ft-stale"]
    assert [j.state(j in pending_jobs(jobs)) for j in jobs] == ["new", "rerun", "done", "rerun", "new", "resume",
                                                                "resume", "done"]
    # Nothing left to run once every run is finished: the missing dataset is not generated for nothing.
    assert pending_jobs([data, kept, done]) == []


def _pids_running(pattern: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                words = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"finetune" in words and any(pattern.encode() in w for w in words):
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
def test_tiny_sweep_on_ray_survives_a_killed_run(tmp_path):
    root = tmp_path / "root"
    sweep_file = tmp_path / "tiny.toml"
    tiny = {**TINY, "steps": 400}
    options = "\n".join(f"{k} = {json.dumps(v)}" for k, v in tiny.items())
    # Two methods on one task: the run of one is killed, the other (needing no pre-training) still finishes.
    sweep_file.write_text(f'root = "{root}"\ntasks = ["{MAZE}"]\nseeds = [0, 1]\n[methods.wsrl]\n'
                          f'warmup_steps = 100\n[methods.sac-fast]\n[data]\nsteps = 2000\n[options]\n{options}\n')
    # One job at a time: later jobs load the earlier ones' compiled functions from the shared cache, and the sweep
    # leaves the other test worker a core.
    command = [sys.executable, "-m", "wsrl", "sweep", str(sweep_file), "--num-cpus", "1", "--quiet"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = root / MAZE / "wsrl" / "seed0"
    deadline = time.monotonic() + 1800  # about 1 minute on an idle 2-core machine; far longer under load
    while not (victim / "state" / "CURRENT").exists():  # the run's first snapshot
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0]
        time.sleep(0.2)
    pids = _pids_running(f"{MAZE}/wsrl/seed{{seed}}")
    assert pids, "the fine-tuning process of the snapshot's run was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    output = first.communicate(timeout=1800)[0]
    assert first.returncode == 2, output
    log = root / "logs" / f"finetune-{MAZE}-wsrl-seeds0-1.log"
    assert f"failed: finetune {MAZE}/wsrl seeds 0,1: killed by signal 9 (log: {log})" in output
    assert "3 done, 0 skipped, 1 failed, 0 blocked" in output  # the other method finished
    assert not (victim / "checkpoint").exists()
    assert (root / MAZE / "sac-fast" / "seed1" / "checkpoint").exists()

    again = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 done, 3 skipped, 0 failed, 0 blocked" in again.stdout
    assert "--resume true" in log.read_text()
    for seed in (0, 1):
        steps = [json.loads(line)["step"] for line in (root / MAZE / "wsrl" / f"seed{seed}" / "metrics.jsonl")
                 .read_text().splitlines()]
        assert steps == sorted(set(steps)) and steps[-1] == tiny["steps"]
    manifest = json.loads((root / MANIFEST).read_text())
    assert sorted((r["kind"], r.get("method"), r["seed"]) for r in manifest["runs"]) == [
        ("finetune", m, s) for m in ("sac-fast", "wsrl") for s in (0, 1)] + [("pretrain", None, s) for s in (0, 1)]
    table = subprocess.run([sys.executable, "-m", "wsrl", "summary", str(root)], capture_output=True, text=True)
    assert table.returncode == 0 and "sac-fast" in table.stdout and "wsrl" in table.stdout, table.stderr

    # A results tree kept without checkpoints or datasets (a committed study), one method's runs deleted: only
    # what that method needs runs again; the pre-training starts over and writes the same metrics.
    pretrain_metrics = {d: (d / "metrics.jsonl").read_text() for d in root.glob(f"{MAZE}/pretrain/*/seed*")}
    for path in [*root.rglob("checkpoint"), root / "datasets"]:
        shutil.rmtree(path)
    for seed in (0, 1):
        shutil.rmtree(root / MAZE / "wsrl" / f"seed{seed}")
    third = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "3 done, 1 skipped, 0 failed, 0 blocked" in third.stdout  # sac-fast's finished runs are kept
    assert pretrain_metrics and all(d.joinpath("metrics.jsonl").read_text() == text
                                    for d, text in pretrain_metrics.items())
