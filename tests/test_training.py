"""End-to-end runs on a small generated point-maze dataset: every method, resume, no-retention guarantees and
bad input. Networks are tiny and runs short: these check behaviour, not learning (see test_learning.py)."""

import functools
import gc
import json
import shlex
import weakref
from pathlib import Path

import numpy as np
import pytest

from wsrl import agents
from wsrl.config import METHODS, ConfigError, FinetuneConfig, PretrainConfig, method_row
from wsrl.data import DataError
from wsrl.datagen import generate
from wsrl.io.checkpoint import CheckpointError
from wsrl.train import online, run
from wsrl.train.offline import pretrain
from wsrl.train.online import finetune

TASK = "pointmaze-umaze-v0"
SMALL = dict(critic_hidden_dims=(16, 16), actor_hidden_dims=(16, 16), batch_size=32, eval_episodes=1,
             progress=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, maze_dataset):
    root = tmp_path_factory.mktemp("training")
    checkpoints = {}
    for algorithm in ("cal-ql", "cql", "iql"):
        run = pretrain(PretrainConfig(task=TASK, algorithm=algorithm, steps=20, eval_interval=20, num_critics=4,
                                      run_dir=str(root / algorithm), dataset=maze_dataset, **SMALL))
        checkpoints[algorithm] = str(run / "checkpoint")
    return root, maze_dataset, checkpoints


def finetune_cfg(workspace, method, name, **kw):
    root, dataset, ckpts = workspace
    ckpt = ckpts[{"calql-ft": "cal-ql", "cql-ft": "cql", "iql-ft": "iql"}.get(method, "cal-ql")]
    # update_after: learn from the end of the 20-step warmup (the default waits for a whole UTD batch of rows)
    base = dict(task=TASK, method=method, steps=60, update_after=20, eval_interval=30, utd=2,
                num_critics=4, dataset=dataset, diagnostic_samples=50, run_dir=str(root / name),
                checkpoint=None if method in ("sac-fast", "rlpd") else ckpt, **SMALL)
    if (kw.get("warmup_source") or method_row(method).warmup_source) != "none":
        base["warmup_steps"] = 20  # a method without warmup refuses a warmup length
    return FinetuneConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def finetuned(workspace):
    """method -> its run with `finetune_cfg`'s options, made once (read only: a test that writes into it copies it)."""
    return functools.cache(lambda method: finetune(finetune_cfg(workspace, method, f"ft-{method}")))


def read(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_end_to_end(finetuned, method):
    run = finetuned(method)
    records = read(run)
    assert [r["step"] for r in records] == [0, 30, 60]
    assert all(0.0 <= r["score"] <= 100.0 for r in records)
    for key in ("q_offline", "td_offline", "kl_policy_offline", "kl_q_offline", "q_online", "td_online"):
        assert np.isfinite(records[-1][key]), key
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == method and config["git_commit"] and "jax" in config["versions"]
    assert (run / "checkpoint" / "agent.msgpack").exists() and not (run / "state").exists()


def test_replay_buffer_becomes_a_dataset(workspace):
    from wsrl.data.loaders import load_dataset
    run = finetune(finetune_cfg(workspace, "sac-fast", "replay", save_replay=True))
    data = load_dataset(run / "replay.hdf5")
    assert len(data) == 60 and data.obs_dim == 6
    assert set(np.unique(data.rewards)) <= {0.0, 1.0}  # the raw convention, not the training transform


def test_pretrain_writes_scores_and_a_loadable_checkpoint(workspace):
    root, _, ckpts = workspace
    records = read(root / "cal-ql")
    assert records[-1]["step"] == 20 and records[-1]["phase"] == "pretrain"
    assert 0.0 <= records[-1]["train/calql_bound_rate"] <= 1.0
    meta = json.loads((Path(ckpts["cal-ql"]) / "checkpoint.json").read_text())
    assert meta["algorithm"] == "cal-ql" and meta["config"]["num_critics"] == 4


class Kill(Exception):
    pass


def killed_at_update(monkeypatch, cfg: FinetuneConfig, n: int) -> None:
    """Run `cfg` and stop it with an exception inside its n-th update (as a kill would), then unpatch."""
    calls = {"n": 0}
    real_update = agents.seeds.update

    def dying_update(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Kill()
        return real_update(*args, **kwargs)

    monkeypatch.setattr(agents.seeds, "update", dying_update)
    with pytest.raises(Kill):
        finetune(cfg)
    monkeypatch.setattr(agents.seeds, "update", real_update)


def test_killed_run_resumes_to_identical_metrics(workspace, monkeypatch):
    kw = dict(steps=450, warmup_steps=50, eval_interval=150, save_interval=100, diagnostic_interval=25)
    reference = read(finetune(finetune_cfg(workspace, "wsrl", "resume-ref", **kw)))

    cfg = finetune_cfg(workspace, "wsrl", "resume-kill", **kw)
    killed_at_update(monkeypatch, cfg, 380)  # step 430: after the snapshot of step 400 and the record of step 425
    assert run.snapshot_steps(Path(cfg.run_dir))
    resumed = read(finetune(FinetuneConfig(**{**cfg.__dict__, "resume": True})))
    assert resumed == reference
    # TensorBoard shows each step once: what the killed run logged after its snapshot is purged.
    assert tensorboard_steps(Path(cfg.run_dir), "q_online") == [r["step"] for r in reference if "q_online" in r]


def tensorboard_steps(run_dir: Path, tag: str) -> list[int]:
    """The steps TensorBoard displays for `tag`: event files read in order (TFRecord framing), and a session
    START at step p hiding the earlier files' events at steps >= p (TensorBoard's purge rule)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event, SessionLog
    shown: list[int] = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            length = struct.unpack("<Q", data[i:i + 8])[0]
            event = Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                shown = [step for step in shown if step < event.step]
            shown += [event.step for value in event.summary.value if value.tag == tag]
    return shown


def test_no_retention_batches_hold_only_online_data(workspace, monkeypatch):
    seen, loaded = [], []
    real_update, real_load = agents.seeds.update, online.load_offline_data

    def recording_update(agent, batch, update_actor=True):
        gc.collect()
        assert loaded and loaded[0]() is None, "the dataset is still in memory during fine-tuning"
        seen.append(transition_rows(batch))
        return real_update(agent, batch, update_actor=update_actor)

    def recording_load(*args, **kwargs):
        data = real_load(*args, **kwargs)  # loaded for the held-out diagnostics sample only
        loaded.append(weakref.ref(data.rewards))
        return data

    captured = {}
    real_mixer = online.BatchMixer

    def capture_mixer(buffer, data, fraction):
        mixer = real_mixer(buffer, data, fraction)
        captured["mixer"], captured["buffer"] = mixer, buffer
        return mixer

    monkeypatch.setattr(agents.seeds, "update", recording_update)
    monkeypatch.setattr(online, "load_offline_data", recording_load)
    monkeypatch.setattr(online, "BatchMixer", capture_mixer)
    finetune(finetune_cfg(workspace, "wsrl", "no-retention"))
    assert captured["mixer"].offline is None  # the dataset is not even referenced
    buffer = captured["buffer"]
    stored = {k: v[:len(buffer)] for k, v in buffer.arrays.items()}
    online_rows = set(transition_rows({**stored, "masks": 1.0 - stored["terminals"]}))
    # Every batch row is one whole stored transition (observation, action, reward, next observation together).
    assert seen and all(row in online_rows for rows in seen for row in rows)
    held = held_out_sample(workspace)["observations"]
    assert not {row.tobytes() for row in held} & {row[0] for rows in seen for row in rows}


def transition_rows(batch: dict) -> list[tuple[bytes, ...]]:
    """Each row of a batch (any leading axes) as (observation, action, reward, next observation, mask) bytes."""
    keys = ("observations", "actions", "rewards", "next_observations", "masks")
    flat = [np.asarray(batch[k], np.float32).reshape(-1, *(batch[k].shape[-1:] if k.endswith("ions") else ()))
            for k in keys]
    return [tuple(np.ascontiguousarray(a[i]).tobytes() for a in flat) for i in range(len(flat[0]))]


def held_out_sample(workspace):
    """The run's held-out diagnostic sample is a fixed draw from the dataset: rebuild it."""
    from wsrl.tasks import get_task
    from wsrl.train import common
    data = common.load_training_data(get_task(TASK), workspace[1], 6, 2, 0.99)
    return common.held_out_sample(data, 50, seed=0)


def test_retention_mixes_the_requested_share(workspace, monkeypatch):
    shares = []
    real_update = agents.seeds.update
    root, dataset, _ = workspace
    from wsrl.data.loaders import load_dataset
    offline_obs = {row.tobytes() for row in load_dataset(dataset).observations}

    def recording_update(agent, batch, update_actor=True):
        rows = batch["observations"].reshape(-1, batch["observations"].shape[-1])
        shares.append(np.mean([row.tobytes() in offline_obs for row in rows]))
        return real_update(agent, batch, update_actor=update_actor)

    monkeypatch.setattr(agents.seeds, "update", recording_update)
    finetune(finetune_cfg(workspace, "rlpd", "rlpd-share", offline_fraction=0.25))
    assert shares and np.allclose(shares, 0.25)


@pytest.mark.parametrize("kw, error, message", [
    ({"method": "wsrl", "checkpoint": "/nonexistent"}, CheckpointError, "not a wsrl checkpoint"),
    ({"method": "rlpd", "dataset": "/nonexistent.hdf5"}, DataError, "/nonexistent.hdf5"),
    ({"method": "cql-ft"}, ConfigError, "pre-trained with cal-ql"),
    ({"method": "wsrl", "num_critics": 3}, CheckpointError, "num_critics: checkpoint has 4"),
    ({"method": "calql-ft", "num_critics": 3}, CheckpointError, "num_critics: checkpoint has 4"),
    ({"method": "iql-ft", "discount": 0.9}, CheckpointError, "discount: checkpoint has 0.99"),
    ({"method": "sac-fast", "dataset": "/nonexistent.hdf5"}, DataError, "/nonexistent.hdf5"),  # diagnostics only
    ({"method": "wsrl", "task": "pointmaze-medium-navigate-singletask-task1-v0"}, ConfigError,
     "pre-trained on task 'pointmaze-umaze-v0'"),
])
def test_bad_input_stops_before_writing(workspace, kw, error, message):
    cfg = finetune_cfg(workspace, kw.pop("method"), "bad", **kw)
    if cfg.method == "cql-ft":
        cfg = FinetuneConfig(**{**cfg.__dict__, "checkpoint": workspace[2]["cal-ql"]})
    with pytest.raises(error, match=message):
        finetune(cfg)
    assert not Path(cfg.run_dir).exists()


def recorded_batches(monkeypatch):
    seen = []
    real_update = agents.seeds.update

    def recording_update(agent, batch, update_actor=True):
        seen.append({k: np.asarray(v).copy() for k, v in batch.items()})
        return real_update(agent, batch, update_actor=update_actor)

    monkeypatch.setattr(agents.seeds, "update", recording_update)
    return seen


@pytest.mark.parametrize("method, kw, first_update", [
    ("jsrl", {}, 65),  # no warmup: wait for one UTD batch of rows, 2 x 32 (the authors' min_steps_to_update)
    ("wsrl", {"warmup_source": "none"}, 65),
    ("wsrl", {"warmup_steps": 80}, 81),  # the warmup is longer than a batch
    ("calql-ft", {"utd": 1}, 301),  # Cal-QL waits for a whole 300-step episode
])
def test_updates_start_when_the_authors_start_them(workspace, monkeypatch, method, kw, first_update):
    seen = recorded_batches(monkeypatch)
    cfg = finetune_cfg(workspace, method, f"start-{method}-{first_update}", steps=320, eval_interval=320,
                       diagnostic_samples=0, **kw)
    finetune(FinetuneConfig(**{**cfg.__dict__, "update_after": None}))
    assert len(seen) == 320 - first_update + 1


def test_online_monte_carlo_returns_use_the_runs_discount(workspace, monkeypatch):
    """Before any episode ends, Cal-QL's provisional returns of an all-failure episode are r_neg / (1 - gamma)
    with the run's gamma (0.9 here): -5 / 0.1."""
    root, dataset, _ = workspace
    pre = pretrain(PretrainConfig(task=TASK, algorithm="cal-ql", steps=5, eval_interval=5, num_critics=2,
                                  discount=0.9, run_dir=str(root / "cal-ql-0.9"), dataset=dataset, **SMALL))
    seen = recorded_batches(monkeypatch)
    cfg = finetune_cfg(workspace, "calql-ft", "mc-discount", steps=40, eval_interval=40, discount=0.9,
                       checkpoint=str(pre / "checkpoint"), update_after=10, num_critics=2, diagnostic_samples=0)
    finetune(cfg)
    rewards = np.concatenate([b["rewards"].ravel() for b in seen])
    assert seen and np.all(rewards == -5.0)  # no success in 40 steps from the fixed start
    assert np.allclose(np.concatenate([b["mc_returns"].ravel() for b in seen]), -50.0)


def test_run_gives_every_common_option_to_both_stages(workspace):
    """`run` pre-trains what the method needs (calql-ft: the authors' 2 critics without LayerNorm) with every
    common option, then fine-tunes with the same options."""
    from wsrl.api import run
    root, dataset, _ = workspace
    cfg = FinetuneConfig(task=TASK, method="calql-ft", steps=40, eval_interval=40, dataset=dataset, discount=0.9,
                         init_temperature=0.3, temperature_lr=2e-4, seed=3, run_dir=str(root / "run-calql"), update_after=10,
                         diagnostic_samples=0, **SMALL)
    pre_dir, ft_dir = run(cfg, pretrain_steps=10)
    pre, ft = (json.loads((d / "config.json").read_text()) for d in (pre_dir, ft_dir))
    for name in ("discount", "init_temperature", "temperature_lr", "seed", "batch_size", "critic_hidden_dims", "eval_episodes"):
        assert pre[name] == ft[name] == json.loads(json.dumps(getattr(cfg, name))), name
    assert pre["learner"]["num_critics"] == 2 and not pre["learner"]["critic_layer_norm"]
    assert pre["learner"]["discount"] == 0.9 and pre["learner"]["init_temperature"] == 0.3
    assert pre["learner"]["temperature_lr"] == 2e-4
    meta = json.loads((pre_dir / "checkpoint" / "checkpoint.json").read_text())
    assert meta["algorithm"] == "cal-ql" and meta["config"]["regularizer"] == "calql"


def test_wsrl_starts_from_iql_pretraining_with_a_tanh_mean_and_acts_the_same(workspace):
    """Fine-tuning that pre-trains IQL for a SAC learner squashes the IQL policy's mean with tanh (paper Fig. 24):
    the fine-tuning learner then acts exactly as the pre-trained policy; the authors' IQL policy is refused."""
    from wsrl.api import run as run_both
    from wsrl.io.checkpoint import load
    root, dataset, ckpts = workspace
    cfg = FinetuneConfig(task=TASK, method="wsrl", steps=40, warmup_steps=20, update_after=20, utd=2, num_critics=4,
                         eval_interval=40, diagnostic_samples=50, dataset=dataset, run_dir=str(root / "wsrl-from-iql"),
                         **SMALL)
    pre_dir, ft_dir = run_both(cfg, algorithm="iql", pretrain_steps=10)
    pre, meta = load(Path(pre_dir) / "checkpoint")
    assert meta["algorithm"] == "iql" and pre.config.tanh_mean and pre.config.num_critics == 4
    assert json.loads((Path(pre_dir) / "config.json").read_text())["iql_tanh_mean"] is True
    sac_config = agents.ActorCriticConfig(critic_hidden_dims=(16, 16), actor_hidden_dims=(16, 16), num_critics=4,
                                          critic_layer_norm=True, actor_layer_norm=True,
                                          state_dependent_std=pre.config.state_dependent_std)
    fresh = agents.warm_start(pre, sac_config, 6, 2)
    obs = np.random.default_rng(0).normal(size=(8, 6)).astype(np.float32)
    np.testing.assert_allclose(agents.eval_actions(fresh, obs), agents.eval_actions(pre, obs), rtol=1e-6)
    assert [r["step"] for r in read(ft_dir)] == [0, 40]
    with pytest.raises(CheckpointError, match="mean not tanh-squashed[\\s\\S]*--iql-tanh-mean true"):
        finetune(finetune_cfg(workspace, "wsrl", "wsrl-from-gaussian-iql", checkpoint=ckpts["iql"]))
    assert not (root / "wsrl-from-gaussian-iql").exists()


def test_unknown_task_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'pointmaze-umaze-v0'"):
        finetune(FinetuneConfig(task="pointmaze-umaz-v0", method="sac-fast"))


def test_existing_run_dir_is_not_overwritten(workspace, finetuned, copy_of):
    cfg = finetune_cfg(workspace, "sac-fast", "ft-sac-fast", run_dir=str(copy_of(finetuned("sac-fast"))))
    with pytest.raises(ConfigError, match="already holds a run"):
        finetune(cfg)


def test_a_trained_policy_makes_a_dataset_that_its_metadata_repeats(finetuned, copy_of, tmp_path):
    """How locomotion `medium` and antmaze data are made: roll out a saved policy with noise, via the CLI."""
    import h5py

    from wsrl import cli
    from wsrl.data.loaders import load_dataset
    # A path with a space: the stored command quotes it.
    ckpt = str(copy_of(finetuned("sac-fast") / "checkpoint", "datagen source"))
    first = tmp_path / "first.hdf5"
    assert cli.main(["datagen", "--task", TASK, "--recipe", "policy", "--checkpoint", ckpt, "--steps", "400",
                     "--seed", "5", "--out", str(first), "--quiet"]) == 0
    with h5py.File(first) as f:
        command = f.attrs["command"]
    assert f"--checkpoint {shlex.quote(str(Path(ckpt).resolve()))}" in command and "'" in command
    again = tmp_path / "again.hdf5"
    assert cli.main(shlex.split(command)[1:] + ["--out", str(again), "--quiet"]) == 0
    a, b = load_dataset(first), load_dataset(again)
    assert len(a) == 400 and np.array_equal(a.actions, b.actions) and np.array_equal(a.rewards, b.rewards)
    with pytest.raises(CheckpointError, match="does not fit"):
        generate("policy", "hopper-random-local-v5", tmp_path / "x.hdf5", steps=10, checkpoint=ckpt, progress=False)


def close_records(a: list[dict], b: list[dict], rel: float = 1e-4) -> bool:
    """The same records, numbers equal up to float rounding (XLA may fuse a group's computation differently)."""
    return [r.keys() for r in a] == [r.keys() for r in b] and all(
        x[k] == pytest.approx(y[k], rel=rel, abs=1e-5) if isinstance(x[k], float) else x[k] == y[k]
        for x, y in zip(a, b) for k in x)


def test_a_seed_in_a_group_follows_its_single_seed_run(workspace):
    """Seeds trained together get the random streams they get alone: seed 1 of a group of two writes the metrics
    (scores, diagnostics, losses) of seed 1 run alone, from the same per-seed checkpoint, to float rounding."""
    root = workspace[0]
    pre = pretrain(PretrainConfig(task=TASK, algorithm="cal-ql", steps=20, eval_interval=10, num_critics=4,
                                  seeds=(0, 1), run_dir=str(root / "pre-group"), dataset=workspace[1], **SMALL))
    assert pre == [root / "pre-group" / "seed0", root / "pre-group" / "seed1"]
    alone_pre = pretrain(PretrainConfig(task=TASK, algorithm="cal-ql", steps=20, eval_interval=10, num_critics=4,
                                        seed=1, run_dir=str(root / "pre-alone"), dataset=workspace[1], **SMALL))
    assert close_records(read(alone_pre), read(pre[1]))
    kw = dict(steps=90, eval_interval=30)
    group = finetune(finetune_cfg(workspace, "wsrl", "ft-group", seeds=(0, 1), **kw,
                                  checkpoint=str(root / "pre-group" / "seed{seed}" / "checkpoint")))
    alone = finetune(finetune_cfg(workspace, "wsrl", "ft-alone", seed=1, **kw,
                                  checkpoint=str(root / "pre-group" / "seed1" / "checkpoint")))
    assert group == [root / "ft-group" / "seed0", root / "ft-group" / "seed1"]
    assert close_records(read(alone), read(group[1]))
    assert read(group[0]) != read(group[1])
    config = json.loads((group[1] / "config.json").read_text())
    assert config["seed"] == 1 and config["checkpoint"].endswith("seed1/checkpoint")


def test_a_killed_group_resumes_to_the_metrics_of_an_uninterrupted_group(workspace, monkeypatch):
    kw = dict(steps=300, eval_interval=100, save_interval=70, seeds=(2, 3))
    reference = [read(d) for d in finetune(finetune_cfg(workspace, "jsrl", "group-ref", **kw))]
    cfg = finetune_cfg(workspace, "jsrl", "group-kill", **kw)
    killed_at_update(monkeypatch, cfg, 200)  # step 220: past the snapshot of step 210, mid-episode
    resumed = finetune(FinetuneConfig(**{**cfg.__dict__, "resume": True}))
    assert [read(d) for d in resumed] == reference
