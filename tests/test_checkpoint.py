"""Checkpoint round-trip, warm-start conversion and incompatible checkpoints."""

import json

import jax
import numpy as np
import pytest

from wsrl import agents
from wsrl.io import checkpoint

from reference import leaves_equal

OBS, ACT = 5, 2


def random_batch(utd=2, batch=16, seed=0):
    r = np.random.default_rng(seed)
    return {
        "observations": r.normal(size=(utd, batch, OBS)).astype(np.float32),
        "actions": r.uniform(-1, 1, (utd, batch, ACT)).astype(np.float32),
        "rewards": r.normal(size=(utd, batch)).astype(np.float32),
        "next_observations": r.normal(size=(utd, batch, OBS)).astype(np.float32),
        "masks": np.ones((utd, batch), np.float32),
        "mc_returns": r.normal(size=(utd, batch)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A Cal-QL agent after one update and its checkpoint directory (read only: a test that writes into it copies
    it)."""
    config = agents.ActorCriticConfig(regularizer="calql", num_critics=10, critic_hidden_dims=(8, 8),
                                      actor_hidden_dims=(8, 8), cql_num_actions=2)
    agent = agents.create(config, OBS, ACT, seed=1)
    agent, _ = agents.update(agent, random_batch())  # non-trivial Adam moments
    path = tmp_path_factory.mktemp("pretrained") / "ckpt"
    checkpoint.save(path, agent, obs_dim=OBS, extra={"task": "unit"})
    return agent, path


@pytest.mark.parametrize("config", [
    agents.ActorCriticConfig(regularizer="calql", cql_lagrange=True, num_critics=2, critic_hidden_dims=(8,),
                             actor_hidden_dims=(8,), cql_num_actions=2),
    agents.IQLConfig(critic_hidden_dims=(8,), actor_hidden_dims=(8,), value_hidden_dims=(8,)),
])
def test_round_trip_is_exact(tmp_path, config):
    agent = agents.create(config, OBS, ACT, seed=3)
    agent, _ = agents.update(agent, random_batch())
    checkpoint.save(tmp_path, agent, obs_dim=OBS, extra={"step": 7})
    loaded, meta = checkpoint.load(tmp_path)
    assert loaded.config == agent.config
    assert leaves_equal(agent, loaded)
    assert meta["step"] == 7 and meta["obs_dim"] == OBS and "jax" in meta["versions"]
    # The loaded agent continues exactly like the original.
    a1, _ = agents.update(agent, random_batch(seed=5))
    a2, _ = agents.update(loaded, random_batch(seed=5))
    assert leaves_equal(a1, a2)


def test_warm_start_keeps_weights_and_adam_moments(pretrained):
    pre, path = pretrained
    config = agents.ActorCriticConfig(critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8))
    fine = agents.warm_start(checkpoint.load(path)[0], config, OBS, ACT, init="both")
    assert fine.config.regularizer == "none" and fine.cql_multiplier is None
    assert leaves_equal(fine.actor, pre.actor) and leaves_equal(fine.critic, pre.critic)
    assert leaves_equal(fine.target_critic_params, pre.target_critic_params)
    assert leaves_equal(fine.temperature, pre.temperature)
    mu = jax.tree_util.tree_leaves(fine.critic.opt_state[0].mu)
    assert any(np.abs(np.asarray(m)).sum() > 0 for m in mu), "Adam moments were reset"


def test_warm_start_policy_only_leaves_fresh_critic(pretrained):
    pre, path = pretrained
    config = agents.ActorCriticConfig(critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8))
    fresh = agents.create(config, OBS, ACT, seed=9)
    fine = agents.warm_start(checkpoint.load(path)[0], config, OBS, ACT, init="policy", seed=9)
    assert leaves_equal(fine.actor, pre.actor)
    assert leaves_equal(fine.critic, fresh.critic) and not leaves_equal(fine.critic, pre.critic)


def test_incompatible_checkpoint_says_what_differs(pretrained):
    path = pretrained[1]
    config = agents.ActorCriticConfig(num_critics=4, critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8))
    with pytest.raises(checkpoint.CheckpointError, match="num_critics: checkpoint has 10, fine-tuning asks for 4"):
        agents.warm_start(checkpoint.load(path)[0], config, OBS, ACT)
    with pytest.raises(checkpoint.CheckpointError, match="observation/action sizes 5/2 in the checkpoint, 6/2"):
        checkpoint.load(path, obs_dim=OBS + 1, action_dim=ACT)
    fits = agents.ActorCriticConfig(critic_hidden_dims=(8, 8), actor_hidden_dims=(8, 8))
    with pytest.raises(checkpoint.CheckpointError, match="observation/action sizes 6/2"):
        agents.warm_start(checkpoint.load(path)[0], fits, OBS + 1, ACT)


def test_continuing_a_checkpoint_refuses_changed_options():
    """calql-ft continues its checkpoint's learner: an option that would change it is refused, not ignored."""
    from wsrl.config import FinetuneConfig
    from wsrl.train.online import check_continued_options
    saved = agents.ActorCriticConfig(num_critics=2, discount=0.9)
    check_continued_options(FinetuneConfig(method="calql-ft", discount=0.9), saved)
    with pytest.raises(checkpoint.CheckpointError, match="temperature_lr: checkpoint has 0.0001, fine-tuning asks "
                                                         "for 0.001"):
        check_continued_options(FinetuneConfig(method="calql-ft", discount=0.9, temperature_lr=1e-3), saved)


def test_missing_and_damaged_checkpoints(tmp_path, pretrained, copy_of):
    with pytest.raises(checkpoint.CheckpointError, match="not a wsrl checkpoint"):
        checkpoint.load(tmp_path / "nothing")
    path = copy_of(pretrained[1])
    meta_path = path / checkpoint.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["config"]["critic_hidden_dims"] = [16, 16]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="does not match"):
        checkpoint.load(path)


def test_a_policy_checkpoint_acts_like_its_source_and_refuses_training(tmp_path, pretrained, capsys):
    """`wsrl export-policy` keeps the policy's parameters alone: the policy acts exactly as the full checkpoint's,
    the files are a fraction of the full checkpoint, and training from it is refused with the way out."""
    import jax

    from wsrl import cli
    from wsrl.datagen import checkpoint_policy
    agent, path = pretrained
    out = tmp_path / "policy"
    assert cli.main(["export-policy", str(path), str(out)]) == 0
    assert f"wrote the policy checkpoint {out}" in capsys.readouterr().out
    assert (out / checkpoint.POLICY_FILE).stat().st_size * 5 < (path / checkpoint.AGENT_FILE).stat().st_size
    acting = checkpoint.load_acting(out, obs_dim=OBS, action_dim=ACT)
    assert leaves_equal(acting.actor.params, agent.actor.params)
    obs = np.random.default_rng(0).normal(size=(4, OBS)).astype(np.float32)
    for a, b in zip(jax.tree_util.tree_leaves(agents.sample_actions(acting, obs, jax.random.PRNGKey(3))),
                    jax.tree_util.tree_leaves(agents.sample_actions(agent, obs, jax.random.PRNGKey(3)))):
        np.testing.assert_array_equal(a, b)
    full, policy = checkpoint_policy(path, OBS, ACT), checkpoint_policy(out, OBS, ACT)
    np.testing.assert_array_equal(full(obs[0], np.random.default_rng(1)), policy(obs[0], np.random.default_rng(1)))
    with pytest.raises(checkpoint.CheckpointError, match="policy checkpoint .* needs the full checkpoint"):
        checkpoint.load(out)
    with pytest.raises(checkpoint.CheckpointError, match="observation/action sizes"):
        checkpoint.load_acting(out, obs_dim=OBS + 1, action_dim=ACT)
    assert cli.main(["export-policy", str(path), str(out)]) == 2  # an existing policy is not overwritten
    (tmp_path / "a-file").write_text("")
    with pytest.raises(checkpoint.CheckpointError, match="not an empty directory"):
        checkpoint.export_policy(path, tmp_path / "a-file")
