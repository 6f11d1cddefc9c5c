"""Your own environment (--env): real Gymnasium environments that are not in the task registry, datasets written
with h5py (D4RL layout) and with Minari's own DataCollector, end-to-end pre-training and fine-tuning, and the
errors of bad options (docs/your-own-environment.md)."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from pendulum import ENV, collect_minari, write_d4rl

from wsrl import cli
from wsrl.config import ConfigError, PretrainConfig, safe_env_name
from wsrl.data import DataError
from wsrl.tasks import resolve_task
from wsrl.train.common import load_training_data

HORIZON = 50
TINY = ["--critic-hidden-dims", "8,8", "--actor-hidden-dims", "8,8", "--batch-size", "16", "--eval-episodes", "1",
        "--progress", "false"]


def pendulum_task(**kw):
    return resolve_task(PretrainConfig(env=ENV, family="locomotion", max_episode_steps=HORIZON, dataset="-", **kw))


@pytest.fixture(scope="module")
def d4rl_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user-env") / "pendulum.hdf5"
    return path, write_d4rl(path, HORIZON, steps=300)


@pytest.fixture(scope="module")
def minari_dir(tmp_path_factory):
    """A dataset collected with minari.DataCollector on the real environment; returns its directory and the
    actions the environment was stepped with."""
    root = tmp_path_factory.mktemp("minari")
    actions = collect_minari(root, horizon=20, episodes=3)
    return root / "test" / "pendulum-v0", actions


# ---- the environment and the data ------------------------------------------------------------------------------

def test_learner_actions_reach_mujoco_in_the_envs_units():
    task = pendulum_task()
    assert task.name == ENV and task.max_episode_steps == HORIZON and task.preset == "locomotion"
    env = task.make_env(0)
    assert (env.action_space.low, env.action_space.high) == (-1.0, 1.0)
    assert env.observation_space.shape == (4,)
    for action, expected in ((1.0, 3.0), (-0.5, -1.5), (-1.0, -3.0)):
        env.step(np.array([action], np.float32))
        assert env.unwrapped.data.ctrl[0] == pytest.approx(expected)  # what MuJoCo was given


def test_d4rl_dataset_actions_load_into_unit_range(d4rl_file):
    path, log = d4rl_file
    data = load_training_data(pendulum_task(), str(path), 4, 1, 0.99)
    # D4RL `qlearning_dataset` semantics: timeout rows and the last row are not transitions
    kept = np.flatnonzero(~log["timeouts"][:-1])
    np.testing.assert_allclose(data.actions[:, 0], log["actions"][kept, 0] / 3.0, atol=2e-5)
    assert data.actions[0, 0] == pytest.approx(1.0, abs=2e-5) and data.actions[1, 0] == pytest.approx(-1.0, abs=2e-5)
    np.testing.assert_allclose(data.observations, log["observations"][kept], rtol=1e-6)


def test_minari_dataset_actions_load_into_unit_range(minari_dir):
    directory, actions = minari_dir
    data = load_training_data(pendulum_task(), str(directory), 4, 1, 0.99)
    np.testing.assert_allclose(data.actions[:, 0], actions[:, 0] / 3.0, atol=2e-5)
    assert np.abs(data.actions).max() == pytest.approx(1.0, abs=2e-5)


def test_dataset_action_outside_the_bounds_is_refused(tmp_path):
    actions = np.zeros((30, 1), np.float32)
    actions[7] = 4.5
    path = tmp_path / "too-big.hdf5"
    write_d4rl(path, HORIZON, len(actions), actions=actions)
    with pytest.raises(DataError, match=r"too-big.hdf5: 1 action value\(s\) lie outside .*row 7.*own units"):
        load_training_data(pendulum_task(), str(path), 4, 1, 0.99)


class Reach(gym.Env):
    """A one-step-per-episode toy: action in [0, 2]; info['reached'] when the action exceeds 1.5."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float64)
    action_space = gym.spaces.Box(0.0, 2.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3), {}

    def step(self, action):
        reached = bool(action[0] > 1.5)
        return np.zeros(3), float(reached), False, False, {"reached": reached}


def test_success_key_becomes_success_and_ids_become_directory_names():
    gym.register("wsrl-test/Reach-v0", entry_point=Reach, max_episode_steps=5)
    task = resolve_task(PretrainConfig(env="wsrl-test/Reach-v0", family="antmaze", success_key="reached",
                                       reward_scale=10.0, reward_bias=-5.0, sparse_reward=-5.0))
    assert task.name == "wsrl-test-Reach-v0" and task.metric == "success" and task.max_episode_steps == 5
    assert task.sparse_negative_reward == -5.0 and task.reward_transform(np.float32([0, 1])).tolist() == [-5, 5]
    env = task.make_env(0)
    assert env.step(np.float32([1.0]))[4]["success"] is True  # 1 -> 2.0 > 1.5
    assert env.step(np.float32([0.0]))[4]["success"] is False  # 0 -> 1.0
    assert safe_env_name("my_pkg:Thing/Arm-v0") == "my_pkg-Thing-Arm-v0"


# ---- end to end ------------------------------------------------------------------------------------------------

def test_pretrain_then_finetune_on_your_own_environment(tmp_path, d4rl_file, minari_dir):
    path, _ = d4rl_file
    env_opts = ["--env", ENV, "--family", "locomotion", "--max-episode-steps", str(HORIZON),
                "--env-kwargs", '{"reset_noise_scale": 0.02}', "--num-critics", "2"]
    pre_dir, ft_dir = tmp_path / "pre", tmp_path / "ft"
    assert cli.main(["pretrain", *env_opts, "--dataset", str(path), "--algorithm", "cql", "--steps", "20",
                     "--eval-interval", "20", "--run-dir", str(pre_dir), *TINY]) == 0
    assert cli.main(["finetune", *env_opts, "--method", "wsrl", "--checkpoint", str(pre_dir / "checkpoint"),
                     "--dataset", str(minari_dir[0]), "--steps", "30", "--warmup-steps", "10", "--update-after",
                     "10", "--utd", "1", "--eval-interval", "30", "--diagnostic-samples", "20",
                     "--run-dir", str(ft_dir), *TINY]) == 0
    for run, last_step in ((pre_dir, 20), (ft_dir, 30)):
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert records[-1]["step"] == last_step and np.isfinite(records[-1]["score"])
        config = json.loads((run / "config.json").read_text())
        assert (config["env"], config["task"], config["family"]) == (ENV, ENV, "locomotion")
        assert config["env_kwargs"] == {"reset_noise_scale": 0.02} and config["max_episode_steps"] == HORIZON
        assert (config["reward_scale"], config["reward_bias"], config["sparse_reward"]) == (1.0, 0.0, None)
    assert (ft_dir / "checkpoint").exists()


# ---- bad options -------------------------------------------------------------------------------------------------

def test_env_needs_a_family_and_lists_them(capsys):
    assert cli.main(["pretrain", "--env", ENV, "--dataset", "d.hdf5"]) == 2
    err = capsys.readouterr().err
    assert "needs --family" in err and "antmaze, kitchen, adroit, locomotion" in err


def test_task_and_env_together_are_refused(capsys):
    assert cli.main(["pretrain", "--task", "hopper-medium-v2", "--env", ENV, "--family", "locomotion"]) == 2
    assert "either --task hopper-medium-v2" in capsys.readouterr().err


def test_env_options_without_env_are_refused():
    with pytest.raises(ConfigError, match="--family, --reward-scale .* go\\(es\\) with --env"):
        resolve_task(PretrainConfig(task="hopper-medium-v2", family="kitchen", reward_scale=2.0))


def test_pretraining_your_env_needs_a_dataset(capsys):
    assert cli.main(["pretrain", "--env", ENV, "--family", "locomotion"]) == 2
    assert "needs --dataset FILE" in capsys.readouterr().err


def test_dict_observations_are_refused():
    with pytest.raises(ConfigError, match=r"observation space Dict.* is not supported.*flat Box observations"):
        resolve_task(PretrainConfig(env="PointMaze_UMaze-v3", env_module="gymnasium_robotics", family="antmaze"))


def test_bad_env_kwargs_json_is_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--env", ENV, "--family", "locomotion", "--env-kwargs", "{reset_noise_scale: 1}"])
    err = capsys.readouterr().err
    assert "--env-kwargs" in err and "expected a JSON object" in err


def test_unknown_env_id_and_bad_kwargs_and_module_are_clear():
    with pytest.raises(ConfigError, match=r"--env InvertedPendulm-v5: gymnasium cannot make it.*--env-module"):
        resolve_task(PretrainConfig(env="InvertedPendulm-v5", family="locomotion"))
    with pytest.raises(ConfigError, match=r"gym.make rejected --env-kwargs \{'no_such_option': 1\}"):
        resolve_task(PretrainConfig(env=ENV, family="locomotion", env_kwargs={"no_such_option": 1}))
    with pytest.raises(ConfigError, match="--env-module no_such_package_xyz: cannot import it"):
        resolve_task(PretrainConfig(env=ENV, family="locomotion", env_module="no_such_package_xyz"))
