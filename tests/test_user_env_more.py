"""Your own environment, continued (docs/your-own-environment.md): a Minari dataset alone names its environment
(recovered from the dataset's env spec), and the Python API takes objects (an environment factory, in-memory
Transitions) in place of names, with config.json recording what was passed and its checksum."""

import hashlib
import json
import shutil

import gymnasium as gym
import h5py
import numpy as np
import pytest

from pendulum import BOUND, ENV, collect_minari, write_d4rl

from wsrl import api, cli
from wsrl.config import DEFAULT_TASK, ConfigError, FinetuneConfig, PretrainConfig
from wsrl.data import DataError, load_dataset
from wsrl.tasks import resolve_task
from wsrl.train.common import IN_MEMORY, transitions_sha256

HORIZON = 20
TINY = ["--critic-hidden-dims", "8,8", "--actor-hidden-dims", "8,8", "--batch-size", "16", "--eval-episodes", "1",
        "--progress", "false", "--num-critics", "2"]
TINY_KW = dict(critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8), batch_size=16, eval_episodes=1,
               progress=False, num_critics=2)


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A dataset collected with minari.DataCollector on the real environment (time limit HORIZON), under its
    own $MINARI_DATASETS_PATH root; returns the root."""
    root = tmp_path_factory.mktemp("minari")
    collect_minari(root, HORIZON, episodes=4)
    return root


def edited_copy(minari_root, tmp_path, edit):
    """A copy of the dataset with its metadata.json edited by `edit(metadata)`."""
    directory = tmp_path / "edited"
    shutil.copytree(minari_root / "test" / "pendulum-v0", directory)
    meta_path = directory / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    return directory


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metrics(run_dir):
    """The run's numbers, without wall-clock times."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k and "per_sec" not in k} for r in rows]


# ---- a Minari dataset alone ------------------------------------------------------------------------------------

def test_neither_task_nor_env_nor_dataset_is_still_the_default_task():
    assert PretrainConfig().task == DEFAULT_TASK
    assert PretrainConfig(dataset="some/file.hdf5").task == DEFAULT_TASK  # a file: the default task as before
    assert PretrainConfig(dataset="some/minari-id").task is None  # a Minari dataset: its own environment


def test_minari_dataset_alone_recovers_its_environment(minari_root, monkeypatch):
    directory = minari_root / "test" / "pendulum-v0"
    task = resolve_task(PretrainConfig(dataset=str(directory), family="locomotion"))
    assert (task.name, task.env_id, task.max_episode_steps, task.preset) == (ENV, ENV, HORIZON, "locomotion")
    env = task.make_env(0)
    env.step(np.array([1.0], np.float32))
    assert env.unwrapped.data.ctrl[0] == pytest.approx(BOUND)  # the recovered env's bounds rescale actions
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))  # by id, and explicit options still win
    task = resolve_task(PretrainConfig(dataset="test/pendulum-v0", family="locomotion", max_episode_steps=7))
    assert (task.env_id, task.max_episode_steps) == (ENV, 7)


def test_pretrain_on_a_minari_dataset_alone_records_the_recovered_env(minari_root, tmp_path):
    directory = minari_root / "test" / "pendulum-v0"
    run_dir = tmp_path / "pre"
    assert cli.main(["pretrain", "--dataset", str(directory), "--family", "locomotion", "--algorithm", "cql",
                     "--steps", "20", "--eval-interval", "20", "--run-dir", str(run_dir), *TINY]) == 0
    records = metrics(run_dir)
    assert records[-1]["step"] == 20 and np.isfinite(records[-1]["score"])
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["env"], config["task"], config["family"]) == (ENV, ENV, "locomotion")
    assert config["env_kwargs"] == {} and config["max_episode_steps"] == HORIZON
    assert config["dataset"] == str(directory)
    assert config["dataset_sha256"] == sha256(directory / "data" / "main_data.hdf5")
    # fine-tuning from it with the same options finds the same environment
    assert cli.main(["finetune", "--dataset", str(directory), "--family", "locomotion", "--method", "wsrl",
                     "--checkpoint", str(run_dir / "checkpoint"), "--steps", "20", "--warmup-steps", "10",
                     "--update-after", "10", "--utd", "1", "--eval-interval", "20", "--diagnostic-samples", "10",
                     "--run-dir", str(tmp_path / "ft"), *TINY]) == 0
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["env"] == ENV


def test_minari_dataset_alone_needs_a_family(minari_root, capsys):
    directory = minari_root / "test" / "pendulum-v0"
    assert cli.main(["pretrain", "--dataset", str(directory)]) == 2
    err = capsys.readouterr().err
    assert "recovered from the dataset" in err and "needs --family" in err and "locomotion" in err


def test_minari_dataset_without_env_spec_is_refused(minari_root, tmp_path):
    directory = edited_copy(minari_root, tmp_path, lambda meta: meta.pop("env_spec"))
    with pytest.raises(ConfigError, match=r"edited: the Minari dataset records no environment.*pass --env ID"):
        resolve_task(PretrainConfig(dataset=str(directory), family="locomotion"))


def test_minari_dataset_whose_env_has_other_spaces_is_refused(minari_root, tmp_path):
    def other_env(meta):
        meta["env_spec"] = meta["env_spec"].replace(ENV, "InvertedDoublePendulum-v5")

    directory = edited_copy(minari_root, tmp_path, other_env)
    with pytest.raises(DataError, match=r"edited: the recovered environment InvertedDoublePendulum-v5 has "
                                        r"observation space .* but the dataset's is .*pass --env ID"):
        resolve_task(PretrainConfig(dataset=str(directory), family="locomotion"))


def test_missing_minari_dataset_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(DataError, match=r"Minari dataset 'nobody/nothing-v0' not found"):
        resolve_task(PretrainConfig(dataset="nobody/nothing-v0", family="locomotion"))


# ---- the Python API takes objects ------------------------------------------------------------------------------

def make_pendulum():
    return gym.make(ENV, max_episode_steps=HORIZON)


def test_factory_and_transitions_run_equals_the_run_by_names(tmp_path):
    path = tmp_path / "pendulum.hdf5"
    write_d4rl(path, HORIZON, steps=200)
    common = dict(family="locomotion", method="wsrl", steps=20, warmup_steps=10, update_after=10, utd=1,
                  eval_interval=20, diagnostic_samples=10, **TINY_KW)
    by_name = FinetuneConfig(env=ENV, max_episode_steps=HORIZON, dataset=str(path),
                             run_dir=str(tmp_path / "names"), **common)
    api.run(by_name, algorithm="cql", pretrain_steps=20)

    data = load_dataset(path, action_map=resolve_task(by_name).action_map)  # actions in [-1, 1]
    by_object = FinetuneConfig(run_dir=str(tmp_path / "objects"), **common)
    api.run(by_object, algorithm="cql", pretrain_steps=20, env=make_pendulum, data=data)

    for stage in ("pretrain", "finetune"):
        names, objects = tmp_path / "names" / stage, tmp_path / "objects" / stage
        assert metrics(names) == metrics(objects) and len(metrics(names)) >= 1
        by_path = json.loads((names / "config.json").read_text())
        by_obj = json.loads((objects / "config.json").read_text())
        assert by_path["dataset_sha256"] == sha256(path) and by_path["dataset_file"] == str(path.resolve())
        assert by_obj["dataset_sha256"] == transitions_sha256(data)
        # The same arrays trained on, whichever way they came: one content hash.
        assert by_path["training_data_sha256"] == by_obj["training_data_sha256"]
        assert by_obj["dataset"] == IN_MEMORY.format(transitions_sha256(data))
        assert (by_obj["env"], by_obj["env_kwargs"], by_obj["max_episode_steps"]) == (ENV, {}, HORIZON)
        assert by_obj["env_factory"].endswith("make_pendulum") and "env_factory" not in by_path


def test_pretrain_takes_a_gym_id_and_transitions(tmp_path):
    path = tmp_path / "pendulum.hdf5"
    write_d4rl(path, HORIZON, steps=100)
    cfg = PretrainConfig(family="locomotion", max_episode_steps=HORIZON, algorithm="cql", steps=10,
                         eval_interval=10, run_dir=str(tmp_path / "run"), **TINY_KW)
    data = load_dataset(path, action_map=resolve_task(PretrainConfig(env=ENV, family="locomotion")).action_map)
    run_dir = api.pretrain(cfg, env=ENV, data=data)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == ENV and config["dataset_sha256"] == transitions_sha256(data)


def test_api_objects_are_checked():
    cfg = PretrainConfig(family="locomotion", steps=10)
    with pytest.raises(ConfigError, match="either task='hopper-medium-v2' or env"):
        api.pretrain(PretrainConfig(task="hopper-medium-v2"), env=make_pendulum)
    with pytest.raises(ConfigError, match="returned int, not a gymnasium.Env"):
        api.pretrain(cfg, env=lambda: 3)
    with pytest.raises(ConfigError, match="data must be a wsrl.data.Transitions"):
        api.pretrain(cfg, env=ENV, data={"observations": np.zeros((3, 4))})
    with pytest.raises(ConfigError, match="drop the config's env / env_kwargs"):
        api.pretrain(PretrainConfig(env="Hopper-v5", family="locomotion"), env=make_pendulum)


# ---- datagen on your own environment ---------------------------------------------------------------------------

def test_datagen_random_on_your_own_environment(tmp_path, monkeypatch):
    from wsrl.train.common import load_training_data
    out = tmp_path / "random.hdf5"
    assert cli.main(["datagen", "--env", ENV, "--family", "locomotion", "--max-episode-steps", str(HORIZON),
                     "--recipe", "random", "--steps", "60", "--out", str(out), "--quiet"]) == 0
    with h5py.File(out, "r") as f:
        actions, command = np.asarray(f["actions"]), f.attrs["command"]
        assert f.attrs["task"] == ENV and len(actions) == 60
    assert np.abs(actions).max() > 1.0 and np.abs(actions).max() <= BOUND  # the environment's own units
    assert f"--env {ENV} --family locomotion --max-episode-steps {HORIZON}" in command
    task = resolve_task(PretrainConfig(env=ENV, family="locomotion", max_episode_steps=HORIZON))
    data = load_training_data(task, str(out), 4, 1, 0.99)  # read back into [-1, 1]
    assert np.abs(data.actions).max() <= 1.0
    # Minari: the dataset records the environment, so --dataset alone recovers it
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    with pytest.warns(UserWarning):  # Minari asks for author metadata
        assert cli.main(["datagen", "--env", ENV, "--max-episode-steps", str(HORIZON), "--recipe", "random",
                         "--steps", "60", "--format", "minari", "--quiet"]) == 0
    recovered = resolve_task(PretrainConfig(dataset=f"wsrl/{ENV}", family="locomotion"))
    assert (recovered.env_id, recovered.max_episode_steps) == (ENV, HORIZON)
    assert len(load_training_data(recovered, f"wsrl/{ENV}", 4, 1, 0.99)) == 60


def test_datagen_on_your_own_environment_refuses_task_recipes(capsys):
    assert cli.main(["datagen", "--env", ENV, "--recipe", "maze-planner", "--steps", "10", "--out", "x.hdf5"]) == 2
    assert "needs a registry task" in capsys.readouterr().err
    assert cli.main(["datagen", "--recipe", "random", "--steps", "10"]) == 2
    assert "needs --task T" in capsys.readouterr().err


def test_a_gymnasium_robotics_environment_end_to_end(tmp_path):
    """AdroitHandDoor-v1 (not a registry id: registered by gymnasium_robotics, imported with --env-module; 39-d
    observations, 28 actions): a random dataset from `datagen --env`, then pre-training and WSRL fine-tuning."""
    env_opts = ["--env", "AdroitHandDoor-v1", "--env-module", "gymnasium_robotics", "--family", "adroit",
                "--max-episode-steps", "20"]
    data, pre_dir, ft_dir = tmp_path / "door.hdf5", tmp_path / "pre", tmp_path / "ft"
    assert cli.main(["datagen", *env_opts, "--recipe", "random", "--steps", "100", "--out", str(data),
                     "--quiet"]) == 0
    with h5py.File(data, "r") as f:
        assert f["observations"].shape == (100, 39) and f["actions"].shape == (100, 28)
    small = ["--num-critics", "2", *TINY]
    assert cli.main(["pretrain", *env_opts, "--dataset", str(data), "--algorithm", "cal-ql", "--steps", "10",
                     "--eval-interval", "10", "--run-dir", str(pre_dir), *small]) == 0
    assert cli.main(["finetune", *env_opts, "--method", "wsrl", "--checkpoint", str(pre_dir / "checkpoint"),
                     "--steps", "30", "--warmup-steps", "10", "--update-after", "10", "--utd", "1",
                     "--eval-interval", "30", "--diagnostic-samples", "0", "--run-dir", str(ft_dir), *small]) == 0
    for run, last_step in ((pre_dir, 10), (ft_dir, 30)):
        assert metrics(run)[-1]["step"] == last_step
        config = json.loads((run / "config.json").read_text())
        assert (config["env"], config["env_module"], config["family"]) == ("AdroitHandDoor-v1", "gymnasium_robotics",
                                                                           "adroit")
