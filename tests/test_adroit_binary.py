"""Adroit binary tasks as the paper runs them: the episode ends at the goal online; offline, a D4RL or Minari
adroit file becomes reward 0 at success / -1 elsewhere, successful trajectories only, each cut after its last
success, every success a terminal. Files are written with h5py and Minari's own writers from real AdroitHand
steps; the expected data is recomputed here with NumPy and the authors' return recursion."""

import warnings

import gymnasium
import h5py
import numpy as np
import pytest

from wsrl.data import DataError
from wsrl.tasks import get_task
from wsrl.train.common import load_training_data

GAMMA = 0.99
DOOR_DIMS, PEN_DIMS = (39, 28), (45, 24)


def authors_mc_returns(rewards, dones, gamma):
    """calc_return_to_go of the authors' code on one trajectory: G_t = r_t + gamma * (1 - done_t) * G_{t+1}."""
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * (1.0 - dones[t]) * running
        out[t] = running
    return out


def expected_from_episodes(episodes):
    """Hand re-computation of the pipeline from per-episode logs (obs T+1, actions, success): successful episodes
    only, cut after the last success, reward 0/-1, done = success, MC on 10 r + 5 per trajectory."""
    out = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "mc_returns")}
    for ep in episodes:
        success = np.asarray(ep["success"], bool)
        if not success.any():
            continue
        n = int(np.flatnonzero(success)[-1]) + 1
        rewards = np.where(success[:n], 0.0, -1.0)
        for key, value in (("observations", ep["obs"][:n]), ("next_observations", ep["obs"][1:n + 1]),
                           ("actions", ep["actions"][:n]), ("rewards", 10 * rewards + 5),
                           ("terminals", success[:n]),
                           ("mc_returns", authors_mc_returns(10 * rewards + 5, success[:n], GAMMA))):
            out[key].append(np.asarray(value))
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def assert_pipeline(data, expected):
    for key, value in expected.items():
        np.testing.assert_allclose(getattr(data, key), value, rtol=1e-5, atol=1e-5, err_msg=key)


# ---- D4RL HDF5 -----------------------------------------------------------------------------------------------

# Four episodes, D4RL adroit style (terminals all 0, a timeout on each episode's last row except the file's last):
# A rows 0-5 (timeout 5): fails, succeeds at 2-3, fails again -> keep 0-3
# B rows 6-10 (timeout 10): never succeeds -> dropped
# C rows 11-17 (timeout 17): success at 12, 15 and on the timeout row 17 (dropped by qlearning_dataset) -> 11-15
# D rows 18-21 (the file ends): success only on the last row, which has no next row -> dropped
GOAL = np.array([0, 0, 1, 1, 0, 0] + [0] * 5 + [0, 1, 0, 0, 1, 0, 1] + [0, 0, 0, 1], bool)
TIMEOUTS = np.zeros(22, bool)
TIMEOUTS[[5, 10, 17]] = True
KEPT = [0, 1, 2, 3, 11, 12, 13, 14, 15]
# Worked by hand, gamma 0.99, rewards -5/5: a = -5 + 0.99 * 5 = -0.05, b = -5 + 0.99 * a = -5.0495.
KEPT_REWARDS = [-5, -5, 5, 5, -5, 5, -5, -5, 5]
KEPT_TERMINALS = [0, 0, 1, 1, 0, 1, 0, 0, 1]
KEPT_MC = [-5.0495, -0.05, 5, 5, -0.05, 5, -5.0495, -0.05, 5]


def write_d4rl_adroit(path, goal_achieved=GOAL):
    n, (obs_dim, act_dim) = len(TIMEOUTS), DOOR_DIMS
    obs = np.arange(n, dtype=np.float32)[:, None] + 0.01 * np.arange(obs_dim, dtype=np.float32)
    actions = np.linspace(-0.9, 0.9, n * act_dim, dtype=np.float32).reshape(n, act_dim)
    dense = np.random.default_rng(0).normal(size=n).astype(np.float32) + 20.0 * GOAL  # door's dense reward shape
    with h5py.File(path, "w") as f:
        for key, value in (("observations", obs), ("actions", actions), ("rewards", dense),
                           ("terminals", np.zeros(n, bool)), ("timeouts", TIMEOUTS)):
            f.create_dataset(key, data=value)
        f.create_dataset("infos/qpos", data=np.zeros((n, 30)))  # vector states, as D4RL stores them
        f.create_dataset("infos/door_body_pos", data=np.zeros((n, 3)))
        if goal_achieved is not None:
            f.create_dataset("infos/goal_achieved", data=goal_achieved)
    return path, obs, actions


def test_d4rl_adroit_file_keeps_successful_trajectories_cut_after_their_last_success(tmp_path):
    path, obs, actions = write_d4rl_adroit(tmp_path / "door-human-v1.hdf5")
    task = get_task("door-binary-v0")
    data = load_training_data(task, str(path), *DOOR_DIMS, GAMMA)
    np.testing.assert_array_equal(data.observations, obs[KEPT])
    np.testing.assert_array_equal(data.next_observations, obs[np.add(KEPT, 1)])
    np.testing.assert_allclose(data.actions, actions[KEPT])
    np.testing.assert_array_equal(data.rewards, KEPT_REWARDS)
    np.testing.assert_array_equal(data.terminals, KEPT_TERMINALS)
    np.testing.assert_allclose(data.mc_returns, KEPT_MC, atol=1e-5)
    trajectories = [KEPT_REWARDS[:4], KEPT_REWARDS[4:]], [KEPT_TERMINALS[:4], KEPT_TERMINALS[4:]]
    authors = np.concatenate([authors_mc_returns(r, d, GAMMA) for r, d in zip(*trajectories)])
    np.testing.assert_allclose(data.mc_returns, authors, atol=1e-5)
    assert data.mc_returns.max() <= 5.0  # no value beyond the success reward: success ends the trajectory


def test_d4rl_adroit_file_without_goal_achieved_is_refused(tmp_path):
    path, _, _ = write_d4rl_adroit(tmp_path / "no-flags.hdf5", goal_achieved=None)
    with pytest.raises(DataError) as err:
        load_training_data(get_task("door-binary-v0"), str(path), *DOOR_DIMS, GAMMA)
    msg = str(err.value)
    assert str(path) in msg and "infos/goal_achieved" in msg and "'success'" in msg


def test_d4rl_adroit_file_that_never_succeeds_is_refused(tmp_path):
    path, _, _ = write_d4rl_adroit(tmp_path / "never.hdf5", goal_achieved=np.zeros(len(TIMEOUTS), bool))
    with pytest.raises(DataError, match="no trajectory reaches the goal") as err:
        load_training_data(get_task("door-binary-v0"), str(path), *DOOR_DIMS, GAMMA)
    assert str(path) in str(err.value)


# ---- Minari, from real AdroitHand steps ----------------------------------------------------------------------

def open_door(env, hinge: float) -> None:
    """Put the door hinge at `hinge` radians (success is hinge >= 1.35 after the step), at rest."""
    u = env.unwrapped
    qpos, qvel = u.data.qpos.copy(), np.zeros_like(u.data.qvel)
    qpos[u.door_hinge_addrs] = hinge
    u.set_state(qpos, qvel)


def aim_pen(env, at_pen: bool) -> None:
    """Turn the pen's target to the pen's own orientation (success if the pen is also in place) or away."""
    u = env.unwrapped
    state = u.get_env_state()
    state["desired_orien"] = u.data.xquat[u.obj_body_id].copy() if at_pen else np.array([0.0, 1.0, 0.0, 0.0])
    u.set_env_state(state)


def run_episodes(env, schedules, seed=0):
    """Step `env` (a collector or a plain env) with small random actions, applying schedules[ep][t] (a callable
    on the env, or None) before step t; log what the env returned, independently of Minari's storage."""
    rng, episodes = np.random.default_rng(seed), []
    for ep, schedule in enumerate(schedules):
        obs, _ = env.reset(seed=seed + ep)
        log = {"obs": [obs], "actions": [], "rewards": [], "success": [], "truncated": []}
        for setter in schedule:
            if setter is not None:
                setter(env)
            action = rng.uniform(-0.3, 0.3, env.action_space.shape).astype(np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            for key, value in (("obs", obs), ("actions", action), ("rewards", reward), ("success", info["success"]),
                               ("truncated", truncated)):
                log[key].append(value)
        assert truncated and not terminated  # the schedule fills the TimeLimit exactly
        episodes.append({k: np.asarray(v) for k, v in log.items()})
    return episodes


def adroit_env(env_id: str, steps: int):
    import gymnasium_robotics
    gymnasium.register_envs(gymnasium_robotics)
    return gymnasium.make(env_id, max_episode_steps=steps)


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def reset_reports_success():
    import minari

    class ResetReportsSuccess(minari.StepDataCallback):
        """The AdroitHand envs report `success` on steps, not at reset; Minari records infos only when every
        step has the reset's keys. The step values are the environment's own."""

        def __call__(self, env, **kwargs):
            step = super().__call__(env, **kwargs)
            step["info"] = {"success": np.False_, **step["info"]}
            return step

    return ResetReportsSuccess


OPEN, CLOSE = (lambda env: open_door(env, 1.5)), (lambda env: open_door(env, 0.0))


def test_minari_door_dataset_from_the_data_collector(minari_root):
    import minari

    collector = minari.DataCollector(adroit_env("AdroitHandDoor-v1", 6), step_data_callback=reset_reports_success(),
                                     record_infos=True)
    episodes = run_episodes(collector, [
        [None, OPEN, None, CLOSE, None, None],  # fail, succeed twice, fail again
        [None] * 6,  # never succeeds
        [None, OPEN, CLOSE, None, None, OPEN],  # succeeds, fails, succeeds on its last (truncated) step
    ])
    assert [e["success"].tolist() for e in episodes] == [[0, 1, 1, 0, 0, 0], [0] * 6, [0, 1, 0, 0, 0, 1]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Minari asks for author metadata
        collector.create_dataset(dataset_id="test/door-binary-v0", algorithm_name="scripted door states")
    collector.close()
    stored = minari.load_dataset("test/door-binary-v0")
    assert len(next(stored.iterate_episodes()).infos["success"]) == 7  # T + 1: the reset's info comes first

    data = load_training_data(get_task("door-binary-v0"), "test/door-binary-v0", *DOOR_DIMS, GAMMA)
    expected = expected_from_episodes(episodes)
    assert len(data) == 3 + 6
    assert_pipeline(data, expected)


def test_minari_pen_dataset_from_episode_buffers(minari_root):
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    env = adroit_env("AdroitHandPen-v1", 5)
    at, away = (lambda e: aim_pen(e, True)), (lambda e: aim_pen(e, False))
    episodes = run_episodes(env, [[None, at, None, away, None], [at, away, at, None, away]], seed=3)
    assert [e["success"].tolist() for e in episodes] == [[0, 1, 1, 0, 0], [1, 0, 1, 1, 0]]
    buffers = [EpisodeBuffer(id=i, observations=e["obs"], actions=e["actions"], rewards=e["rewards"].tolist(),
                             terminations=[False] * 5, truncations=e["truncated"].tolist(),
                             infos={"success": e["success"]})  # T infos, one per step (no reset info)
               for i, e in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("test/pen-binary-v0", buffers, env=env, algorithm_name="scripted")

    data = load_training_data(get_task("pen-binary-v0"), "test/pen-binary-v0", *PEN_DIMS, GAMMA)
    expected = expected_from_episodes(episodes)
    assert len(data) == 3 + 4
    assert_pipeline(data, expected)


def test_minari_adroit_dataset_without_infos_is_refused(minari_root):
    import minari

    collector = minari.DataCollector(adroit_env("AdroitHandDoor-v1", 4))  # record_infos=False: no success flags
    run_episodes(collector, [[None, OPEN, None, None]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collector.create_dataset(dataset_id="test/door-noinfo-v0", algorithm_name="scripted")
    collector.close()
    with pytest.raises(DataError) as err:
        load_training_data(get_task("door-binary-v0"), "test/door-noinfo-v0", *DOOR_DIMS, GAMMA)
    msg = str(err.value)
    assert str(minari_root / "test/door-noinfo-v0/data/main_data.hdf5") in msg and "'success'" in msg
    assert "record_infos=True" in msg


# ---- online --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, reach_goal", [
    ("door-binary-v0", OPEN),
    ("pen-binary-v0", lambda env: aim_pen(env, True)),
], ids=["door", "pen"])
def test_online_episode_terminates_when_the_goal_is_achieved(name, reach_goal):
    task = get_task(name)
    env = task.make_env(seed=0)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(zero)
        assert reward == -1.0 and not terminated and not truncated and not info["success"]
    reach_goal(env)
    _, reward, terminated, truncated, info = env.step(zero)
    assert reward == 0.0 and info["success"] and terminated and not truncated
    assert task.reward_transform(np.float32(reward)) == 5.0 and task.sparse_negative_reward == -5.0
