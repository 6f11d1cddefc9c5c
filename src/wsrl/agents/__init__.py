"""Learners. Every learner module offers the same functions: create, update, sample_actions, eval_actions;
`module_of(agent)` picks the module for an agent object."""

from wsrl.agents import iql, sac
from wsrl.agents.iql import IQL, IQLConfig
from wsrl.agents.sac import ActorCritic, ActorCriticConfig

__all__ = ["ActorCritic", "ActorCriticConfig", "IQL", "IQLConfig", "Agent", "module_of", "create", "update",
           "sample_actions", "eval_actions"]

Agent = ActorCritic | IQL


def module_of(agent):
    return iql if isinstance(agent, IQL) else sac


def create(config, obs_dim: int, action_dim: int, seed: int):
    module = iql if isinstance(config, IQLConfig) else sac
    return module.create(config, obs_dim, action_dim, seed)


def update(agent, batch, update_actor: bool = True):
    return module_of(agent).update(agent, batch, update_actor=update_actor)


def sample_actions(agent, observations, key):
    return module_of(agent).sample_actions(agent, observations, key)


def eval_actions(agent, observations):
    return module_of(agent).eval_actions(agent, observations)


from wsrl.agents import seeds  # noqa: E402  (uses module_of)
from wsrl.agents.transfer import architecture_problems, warm_start  # noqa: E402
