"""Evaluation steps every seed's episodes together; its scores equal those of each episode played alone."""

import jax
import numpy as np
import pytest

from wsrl import agents
from wsrl.agents import sac
from wsrl.config import ActorCriticConfig
from wsrl.tasks import get_task
from wsrl.train import common

TASK = "hopper-medium-v2"  # dense rewards and early termination: episodes differ in return and in length


def alone(task, agent, seed: int) -> common.Episode:
    """One episode on its own environment, one action call per step."""
    env, act = task.make_env(0), jax.jit(sac.eval_actions)
    obs, _ = env.reset(seed=seed)
    total, success = 0.0, False
    while True:
        action = np.asarray(act(agent, obs[None].astype(np.float32)))[0]
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        success = success or bool(info.get("success", False))
        if terminated or truncated:
            return common.Episode(total, success, float(reward))


@pytest.mark.parametrize("lanes", [2, 10])  # 5 episodes in rounds of 2, 2 and 1; or all 5 at once
def test_lockstep_evaluation_scores_equal_episodes_played_one_by_one(monkeypatch, lanes):
    monkeypatch.setattr(common, "EVAL_LANES", lanes)
    task, seeds, episodes = get_task(TASK), [3, 8], 5
    config = ActorCriticConfig(critic_hidden_dims=(16,), actor_hidden_dims=(16,), num_critics=2)
    members = [sac.create(config, 11, 3, seed) for seed in seeds]
    envs = [common.eval_envs(task, seed, episodes) for seed in seeds]
    assert [len(e) for e in envs] == [min(episodes, lanes)] * 2

    scores = common.evaluate(task, envs, agents.seeds.stack(members), episodes, [100, 200])

    for agent, first, score in zip(members, [100, 200], scores):
        played = [alone(task, agent, first + e) for e in range(episodes)]
        expected = common.score_episodes(task, played)
        assert len({round(e.ret, 3) for e in played}) == episodes  # the episodes really differ
        assert score["return"] == pytest.approx(expected["return"], rel=1e-4)
        assert score["score"] == pytest.approx(expected["score"], rel=1e-4)
