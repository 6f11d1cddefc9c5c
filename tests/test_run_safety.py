"""Run directories survive kills and misuse: snapshots are all-or-nothing (real SIGKILLs inside a snapshot write,
a full disk), one process at a time, and --resume continues only the same run."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wsrl import cli
from wsrl.config import FinetuneConfig, PretrainConfig
from wsrl.train import run
from wsrl.train.offline import pretrain
from wsrl.train.online import finetune

TASK = "pointmaze-umaze-v0"
SMALL = dict(task=TASK, critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8), batch_size=16, eval_episodes=1,
             progress=False, num_critics=2)


@pytest.fixture(scope="module")
def reference_run(maze_dataset, tmp_path_factory):
    """An uninterrupted pre-training run with `pretrain_options` (read only: a test that writes into it copies it)."""
    return pretrain(PretrainConfig(**pretrain_options(maze_dataset, tmp_path_factory.mktemp("ref") / "run")))


@pytest.fixture(scope="module")
def reference(reference_run):
    """The metrics of the uninterrupted run."""
    return metrics(reference_run)


def pretrain_options(dataset, run_dir, **kw):
    return {**SMALL, "algorithm": "cal-ql", "steps": 60, "eval_interval": 20, "save_interval": 20,
            "dataset": dataset, "run_dir": str(run_dir), **kw}


def finetune_options(run_dir, **kw):
    return {**SMALL, "method": "sac-fast", "steps": 700, "warmup_steps": 50, "update_after": 50,
            "eval_interval": 100, "save_interval": 100, "diagnostic_samples": 0, "run_dir": str(run_dir), **kw}


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def run_script(body: str, kind: str, options: dict) -> subprocess.CompletedProcess:
    """Run kind(Config(**options)) in a fresh Python process after `body` (which patches what it needs)."""
    script = textwrap.dedent(f"""
        import json, os, signal, sys
        from wsrl.config import PretrainConfig, FinetuneConfig
        from wsrl.train.offline import pretrain
        from wsrl.train.online import finetune
        options = json.loads(sys.argv[1])
        for key in ("critic_hidden_dims", "actor_hidden_dims"):
            options[key] = tuple(options[key])
        """) + textwrap.dedent(body) + textwrap.dedent(f"""
        {kind}({'PretrainConfig' if kind == 'pretrain' else 'FinetuneConfig'}(**options))
        """)
    return subprocess.run([sys.executable, "-c", script, json.dumps(options)], capture_output=True, text=True,
                          timeout=600)


KILL_AT_SECOND_SNAPSHOT = """
    import wsrl.train.run as run_module
    real = run_module.Run.snapshot
    calls = {{"n": 0}}
    def dying(self, step, write):
        calls["n"] += 1
        if calls["n"] < 2:
            return real(self, step, write)
        def half(directory):
            {inside}
        return real(self, step, half)
    run_module.Run.snapshot = dying
"""
KILL_POINTS = {  # where inside the second snapshot the process is SIGKILLed
    "before any file": "os.kill(os.getpid(), signal.SIGKILL)",
    "mid-file": "(directory / 'agent').mkdir(); (directory / 'agent' / 'agent.msgpack').write_bytes(b'x' * 10); "
                "os.kill(os.getpid(), signal.SIGKILL)",
    "before the switch": "write(directory); run_module.atomic.write_bytes = lambda *a: os.kill(os.getpid(), "
                         "signal.SIGKILL)",
}


@pytest.mark.slow
@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_inside_a_pretraining_snapshot_resumes_to_identical_metrics(maze_dataset, reference, tmp_path,
                                                                            point):
    options = pretrain_options(maze_dataset, tmp_path / "killed")
    done = run_script(KILL_AT_SECOND_SNAPSHOT.format(inside=KILL_POINTS[point]), "pretrain", options)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert run.snapshot_steps(tmp_path / "killed") == [20]  # the first one, intact
    resumed = pretrain(PretrainConfig(**{**options, "resume": True, "critic_hidden_dims": (8, 8),
                                          "actor_hidden_dims": (8, 8)}))
    assert metrics(resumed) == reference


@pytest.mark.slow
def test_sigkill_inside_a_finetuning_snapshot_resumes_to_identical_metrics(tmp_path):
    reference = metrics(finetune(FinetuneConfig(**finetune_options(tmp_path / "ref"))))
    options = finetune_options(tmp_path / "killed")
    body = KILL_AT_SECOND_SNAPSHOT.format(inside=KILL_POINTS["before the switch"])
    done = run_script(body, "finetune", options)
    assert done.returncode == -signal.SIGKILL, done.stderr
    resumed = finetune(FinetuneConfig(**{**options, "resume": True, "critic_hidden_dims": (8, 8),
                                         "actor_hidden_dims": (8, 8)}))
    assert metrics(resumed) == reference


def test_a_run_resumed_with_other_snapshot_spacing_ends_with_the_same_metrics(maze_dataset, reference, tmp_path,
                                                                              monkeypatch):
    options = pretrain_options(maze_dataset, tmp_path / "respaced")
    real = run.Run.snapshot

    def stopped_after_the_first(self, step, write):
        real(self, step, write)
        raise KeyboardInterrupt  # stopped (Ctrl-C) right after its first snapshot, at step 20
    monkeypatch.setattr(run.Run, "snapshot", stopped_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        pretrain(PretrainConfig(**options))
    monkeypatch.setattr(run.Run, "snapshot", real)
    assert run.snapshot_steps(tmp_path / "respaced") == [20]
    resumed = pretrain(PretrainConfig(**{**options, "resume": True, "save_interval": 30}))
    assert metrics(resumed) == reference


def test_full_disk_during_a_snapshot_keeps_the_previous_one(maze_dataset, reference, tmp_path):
    """A file-size limit makes the second snapshot's writes fail: a one-line error, the first snapshot stays
    current, and resuming without the limit ends with the uninterrupted run's metrics."""
    options = pretrain_options(maze_dataset, tmp_path / "full")
    body = """
        import resource
        import wsrl.train.run as run_module
        real = run_module.Run.snapshot
        calls = {"n": 0}
        def limited(self, step, write):
            calls["n"] += 1
            if calls["n"] == 2:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))
            return real(self, step, write)
        run_module.Run.snapshot = limited
        """
    done = run_script(body, "pretrain", options)
    assert done.returncode != 0
    assert "could not write the snapshot of step 40" in done.stderr
    assert "the snapshot of step 20 is intact" in done.stderr
    assert [p.name for p in (tmp_path / "full" / "state").glob("snapshot-*")] == ["snapshot-20"]
    resumed = pretrain(PretrainConfig(**{**options, "resume": True, "critic_hidden_dims": (8, 8),
                                         "actor_hidden_dims": (8, 8)}))
    assert metrics(resumed) == reference


def test_a_second_process_on_a_run_directory_stops_at_once(maze_dataset, tmp_path):
    run_dir = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pathlib import Path
        from wsrl.train import run
        with run.locked(Path({str(run_dir)!r})):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(run.RunDirError, match=f"in use by another wsrl process \\(PID {holder.pid}\\)"):
            pretrain(PretrainConfig(**pretrain_options(maze_dataset, run_dir)))
        assert time.monotonic() - started < 30
        assert not (run_dir / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()


def test_resume_refuses_another_kind_of_run_and_changed_options(maze_dataset, reference_run, copy_of):
    run_dir = copy_of(reference_run)
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(run.RunDirError, match="kind: the run has 'pretrain', now 'finetune'"):
        finetune(FinetuneConfig(**{**finetune_options(run_dir), "resume": True}))
    with pytest.raises(run.RunDirError, match=r"seed: the run has 0, now 5[\s\S]*steps: the run has 60, now 80"):
        pretrain(PretrainConfig(**{**pretrain_options(maze_dataset, run_dir), "resume": True, "seed": 5,
                                   "steps": 80}))
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_resume_of_a_run_killed_before_its_first_snapshot_starts_over(maze_dataset, reference, tmp_path, capsys):
    options = pretrain_options(maze_dataset, tmp_path / "early")
    body = """
        import wsrl.train.run as run_module
        run_module.Run.snapshot = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        """
    assert run_script(body, "pretrain", options).returncode == -signal.SIGKILL
    assert (tmp_path / "early" / "metrics.jsonl").exists()  # it had evaluated once
    with pytest.raises(run.RunDirError, match="already holds a run"):
        pretrain(PretrainConfig(**{**options, "critic_hidden_dims": (8, 8), "actor_hidden_dims": (8, 8)}))
    resumed = pretrain(PretrainConfig(**{**options, "resume": True, "critic_hidden_dims": (8, 8),
                                         "actor_hidden_dims": (8, 8)}))
    assert "no snapshot yet" in capsys.readouterr().out
    assert metrics(resumed) == reference


def test_cli_reports_a_busy_run_directory_in_one_line(maze_dataset, tmp_path, capsys):
    run_dir = tmp_path / "busy-cli"
    with run.locked(run_dir):
        code = cli.main(["pretrain", "--task", TASK, "--dataset", maze_dataset, "--run-dir", str(run_dir),
                         "--steps", "5", "--progress", "false"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"PID {os.getpid()}" in err[0]


def test_a_run_directory_that_is_a_file_or_read_only_is_one_clear_error(maze_dataset, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert cli.main(["pretrain", "--task", TASK, "--dataset", maze_dataset, "--run-dir", str(blocker), "--steps",
                     "5", "--progress", "false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot use" in err[0] and str(blocker) in err[0]
    assert blocker.read_text() == "not a directory"


def test_negative_seed_and_unknown_family_are_refused(capsys):
    assert cli.main(["pretrain", "--task", TASK, "--seed", "-1"]) == 2
    assert "seed=-1 must be >= 0" in capsys.readouterr().err
    assert cli.main(["tasks", "--family", "antmze"]) == 2
    assert "Did you mean 'antmaze'" in capsys.readouterr().err
