"""Warm-starting the SAC fine-tuning learner from a pre-trained agent (Cal-QL, CQL, SAC; IQL's critic, and its
policy when its mean is tanh-squashed), in memory: the pre-trained policy and/or critic are copied in with their Adam
states, as the paper does."""

from __future__ import annotations

import jax

from wsrl.agents import sac
from wsrl.agents.iql import IQLConfig
from wsrl.agents.sac import ActorCriticConfig
from wsrl.errors import CheckpointError

INIT_CHOICES = ("both", "policy", "critic", "none")
PARTS = {"both": ("policy", "critic"), "policy": ("policy",), "critic": ("critic",), "none": ()}


def _architecture(config, part: str) -> dict:
    if part == "policy":
        names = ("actor_hidden_dims", "actor_layer_norm", "state_dependent_std")
    else:
        names = ("critic_hidden_dims", "critic_layer_norm", "num_critics", "discount")  # Q's scale depends on gamma
    return {n: getattr(config, n) for n in names}


def architecture_problems(saved, config: ActorCriticConfig, init: str) -> list[str]:
    """What keeps a pre-trained learner config `saved` from initialising `config` (parts named by `init`)."""
    gaussian_iql = isinstance(saved, IQLConfig) and not saved.tanh_mean
    problems = []
    if init in ("both", "policy") and gaussian_iql:
        problems.append("an IQL policy pre-trained as the authors' Gaussian (mean not tanh-squashed) cannot "
                        "initialise the tanh-Gaussian SAC policy; pre-train IQL with --iql-tanh-mean true, use "
                        "--init critic, or pre-train with cal-ql / cql")
    for part in PARTS[init]:
        if part == "policy" and gaussian_iql:
            continue
        want, have = _architecture(config, part), _architecture(saved, part)
        problems += [f"{name}: checkpoint has {have[name]}, fine-tuning asks for {want[name]}"
                     for name in want if want[name] != have[name]]
    return problems


def _shapes(tree) -> list:
    return [x.shape for x in jax.tree_util.tree_leaves(tree)]


def warm_start(pre, config: ActorCriticConfig, obs_dim: int, action_dim: int, *, init: str = "both",
               seed: int = 0) -> sac.ActorCritic:
    """A fresh SAC learner (`config`, `seed`) with the parts of `pre` named by `init` copied in.

    The temperature comes with the policy (the paper keeps the pre-trained alpha; IQL has none, so a policy from
    IQL starts at the fine-tuning run's initial temperature); the CQL multiplier is dropped.
    `init="none"` returns the fresh learner (SAC from scratch)."""
    sac.check_choice("init", init, INIT_CHOICES)
    fresh = sac.create(config, obs_dim, action_dim, seed)
    if init == "none":
        return fresh
    problems = architecture_problems(pre.config, config, init)
    if problems:
        raise CheckpointError(
            "the pre-trained agent does not fit this fine-tuning run:\n  - " + "\n  - ".join(problems) +
            "\nPre-train a matching checkpoint (e.g. `wsrl pretrain --task TASK --num-critics N "
            "--critic-layer-norm true`), or change the fine-tuning options to match the checkpoint.")
    if init in ("both", "policy"):
        if _shapes(pre.actor.params) != _shapes(fresh.actor.params):
            raise CheckpointError(f"the pre-trained policy's input/output sizes differ from this task's "
                                  f"observation/action sizes {obs_dim}/{action_dim}: was it pre-trained on "
                                  f"another task?")
        fresh = fresh.replace(actor=pre.actor)
        if not isinstance(pre.config, IQLConfig):
            fresh = fresh.replace(temperature=pre.temperature)
    if init in ("both", "critic"):
        if _shapes(pre.critic.params) != _shapes(fresh.critic.params):
            raise CheckpointError(f"the pre-trained critic's input sizes differ from this task's observation/"
                                  f"action sizes {obs_dim}/{action_dim}: was it pre-trained on another task?")
        fresh = fresh.replace(critic=pre.critic, target_critic_params=pre.target_critic_params)
    return fresh
