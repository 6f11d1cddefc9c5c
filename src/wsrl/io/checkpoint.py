"""Checkpoints: one directory holding every array of an agent (parameters, target parameters, Adam states,
temperature, rng) in `agent.msgpack`, and in `checkpoint.json` the learner kind, its resolved config, the
observation and action sizes, counters and provenance. `warm_start` turns a pre-trained checkpoint (Cal-QL, CQL
or SAC) into the SAC learner for fine-tuning, keeping the optimizer states as the paper does."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import flax.serialization as serialization
import jax

from wsrl import agents
from wsrl.agents import IQL, ActorCritic, ActorCriticConfig, IQLConfig
from wsrl.errors import WsrlError
from wsrl.io.provenance import provenance

AGENT_FILE, META_FILE = "agent.msgpack", "checkpoint.json"
FORMAT_VERSION = 1
INIT_CHOICES = ("both", "policy", "critic", "none")
_CONFIG_TYPES = {"actor_critic": ActorCriticConfig, "iql": IQLConfig}


class CheckpointError(WsrlError):
    """A checkpoint is missing, malformed or does not fit what it is loaded into."""


def learner_kind(agent) -> str:
    return "iql" if isinstance(agent, IQL) else "actor_critic"


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(kind: str, values: dict):
    cls = _CONFIG_TYPES[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CheckpointError(f"config fields {unknown} are unknown to this version of wsrl's {cls.__name__}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` in one rename; a failed write (full disk) leaves the old file and no `.tmp`."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save(directory: str | Path, agent, *, obs_dim: int, extra: dict | None = None) -> Path:
    """Write the agent and its metadata; files are replaced atomically so a kill never leaves half a file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = serialization.to_state_dict(jax.device_get(agent))
    atomic_write(directory / AGENT_FILE, serialization.msgpack_serialize(state))
    meta = {"format_version": FORMAT_VERSION, "learner": learner_kind(agent), "config": config_to_dict(agent.config),
            "obs_dim": int(obs_dim), "action_dim": int(agent.action_dim), **provenance(), **(extra or {})}
    atomic_write(directory / META_FILE, json.dumps(meta, indent=2).encode())
    return directory


def read_meta(directory: str | Path) -> dict:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: {directory} is not a wsrl checkpoint directory "
                              f"(make one with `wsrl pretrain`)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is damaged") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format_version {meta.get('format_version')}; this wsrl reads "
                              f"{FORMAT_VERSION}")
    return meta


def load(directory: str | Path):
    """-> (agent, meta)."""
    meta = read_meta(directory)
    config = config_from_dict(meta["learner"], meta["config"])
    template = agents.create(config, meta["obs_dim"], meta["action_dim"], seed=0)
    raw = (Path(directory) / AGENT_FILE).read_bytes()
    try:
        agent = serialization.from_state_dict(template, serialization.msgpack_restore(raw))
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{Path(directory) / AGENT_FILE} does not match its {META_FILE}: {err}") from err
    shapes = lambda tree: [getattr(x, "shape", ()) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    if shapes(agent) != shapes(template):
        raise CheckpointError(f"{Path(directory) / AGENT_FILE} does not match its {META_FILE}: the array shapes "
                              f"differ from what the saved config builds; the checkpoint is damaged")
    return agent, meta


def _architecture(config, part: str) -> dict:
    if part == "policy":
        names = ("actor_hidden_dims", "actor_layer_norm", "state_dependent_std")
    else:
        names = ("critic_hidden_dims", "critic_layer_norm", "num_critics", "discount")  # Q's scale depends on gamma
    return {n: getattr(config, n) for n in names}


def size_problems(meta: dict, obs_dim: int, action_dim: int) -> list[str]:
    if meta["obs_dim"] == obs_dim and meta["action_dim"] == action_dim:
        return []
    return [f"observation/action sizes {meta['obs_dim']}/{meta['action_dim']} in the checkpoint, "
            f"{obs_dim}/{action_dim} in the task (was it pre-trained on another task?)"]


def check_sizes(meta: dict, obs_dim: int, action_dim: int, source: str) -> None:
    problems = size_problems(meta, obs_dim, action_dim)
    if problems:
        raise CheckpointError(f"checkpoint {source} does not fit this task: {problems[0]}")


def architecture_problems(saved, config: ActorCriticConfig, init: str) -> list[str]:
    """What keeps a pre-trained learner config `saved` from initialising `config` (parts named by `init`)."""
    iql_saved = isinstance(saved, IQLConfig)
    problems = []
    if init in ("both", "policy") and iql_saved:
        problems.append("an IQL policy is an un-squashed Gaussian and cannot initialise the tanh-Gaussian SAC "
                        "policy; use --init critic, or pre-train with cal-ql / cql")
    parts = {"both": ("policy", "critic"), "policy": ("policy",), "critic": ("critic",), "none": ()}[init]
    for part in parts:
        if part == "policy" and iql_saved:
            continue
        want, have = _architecture(config, part), _architecture(saved, part)
        for name in want:
            if want[name] != have[name]:
                problems.append(f"{name}: checkpoint has {have[name]}, fine-tuning asks for {want[name]}")
    return problems


def check_compatible(meta: dict, config: ActorCriticConfig, obs_dim: int, action_dim: int, init: str,
                     source: str) -> None:
    """Fail with what differs and how to pre-train a matching checkpoint."""
    problems = size_problems(meta, obs_dim, action_dim)
    problems += architecture_problems(config_from_dict(meta["learner"], meta["config"]), config, init)
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit this fine-tuning run:\n  - " + "\n  - ".join(problems) +
            "\nPre-train a matching checkpoint (e.g. `wsrl pretrain --task TASK --num-critics N "
            "--critic-layer-norm true`), or change the fine-tuning options to match the checkpoint.")


def warm_start(directory: str | Path, config: ActorCriticConfig, obs_dim: int, action_dim: int, *,
               init: str = "both", seed: int = 0) -> ActorCritic:
    """A fresh SAC learner with the pre-trained policy and/or critic (with their Adam states) copied in.

    The temperature is taken from the checkpoint together with the policy (the paper keeps the pre-trained
    alpha); the CQL multiplier is dropped. `init="none"` returns the fresh learner (SAC from scratch).
    """
    agents.sac.check_choice("init", init, INIT_CHOICES)
    fresh = agents.sac.create(config, obs_dim, action_dim, seed)
    if init == "none":
        return fresh
    meta = read_meta(directory)
    check_compatible(meta, config, obs_dim, action_dim, init, str(directory))
    pre, _ = load(directory)
    if init in ("both", "policy"):
        fresh = fresh.replace(actor=pre.actor, temperature=pre.temperature)
    if init in ("both", "critic"):
        fresh = fresh.replace(critic=pre.critic, target_critic_params=pre.target_critic_params)
    return fresh
