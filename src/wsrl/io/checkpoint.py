"""Checkpoints: one directory holding every array of an agent (parameters, target parameters, Adam states,
temperature, rng) in `agent.msgpack`, and in `checkpoint.json` the learner kind, its resolved config, the
observation and action sizes, counters and provenance. A policy checkpoint (`export_policy`) keeps only the
policy's parameters, in `policy.msgpack`: small enough to ship, it drives data generation but cannot be trained
on. This module only saves and loads (warm-starting a learner from a loaded agent is `wsrl.agents.warm_start`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import flax.serialization as serialization
import jax

from wsrl import agents
from wsrl.agents import IQL, ActorCriticConfig, IQLConfig
from wsrl.errors import CheckpointError
from wsrl.io import atomic
from wsrl.io.provenance import provenance

AGENT_FILE, META_FILE, POLICY_FILE = "agent.msgpack", "checkpoint.json", "policy.msgpack"
FORMAT_VERSION = 1
_CONFIG_TYPES = {"actor_critic": ActorCriticConfig, "iql": IQLConfig}


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


def save(directory: str | Path, agent, *, obs_dim: int, extra: dict | None = None) -> Path:
    """Write the agent and its metadata; files are replaced atomically so a kill never leaves half a file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = serialization.to_state_dict(jax.device_get(agent))
    atomic.write_bytes(directory / AGENT_FILE, serialization.msgpack_serialize(state))
    meta = {"format_version": FORMAT_VERSION, "learner": learner_kind(agent), "config": config_to_dict(agent.config),
            "obs_dim": int(obs_dim), "action_dim": int(agent.action_dim), **provenance(), **(extra or {})}
    atomic.write_bytes(directory / META_FILE, json.dumps(meta, indent=2).encode())
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


def _fitting_meta(directory: str | Path, obs_dim: int | None, action_dim: int | None) -> dict:
    meta = read_meta(directory)
    if obs_dim is not None and (meta["obs_dim"], meta["action_dim"]) != (obs_dim, action_dim):
        raise CheckpointError(f"checkpoint {directory} does not fit this task: observation/action sizes "
                              f"{meta['obs_dim']}/{meta['action_dim']} in the checkpoint, {obs_dim}/{action_dim} "
                              f"in the task (was it pre-trained on another task?)")
    return meta


def _restore(template, path: Path):
    """`template`'s tree with the arrays stored at `path`, refused if anything differs."""
    try:
        restored = serialization.from_state_dict(template, serialization.msgpack_restore(path.read_bytes()))
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path} does not match its {META_FILE}: {err}") from err
    shapes = lambda tree: [getattr(x, "shape", ()) for x in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    if shapes(restored) != shapes(template):
        raise CheckpointError(f"{path} does not match its {META_FILE}: the array shapes differ from what the saved "
                              f"config builds; the checkpoint is damaged")
    return restored


def _template(meta: dict):
    """A fresh agent of the checkpoint's config and sizes: the tree its arrays are restored into."""
    return agents.create(config_from_dict(meta["learner"], meta["config"]), meta["obs_dim"], meta["action_dim"],
                         seed=0)


def load(directory: str | Path, *, obs_dim: int | None = None, action_dim: int | None = None):
    """-> (agent, meta). With `obs_dim` / `action_dim`, a checkpoint made for other sizes is refused."""
    meta = _fitting_meta(directory, obs_dim, action_dim)
    if meta.get("contents") == "policy":
        raise CheckpointError(f"{directory} is a policy checkpoint (made by `wsrl export-policy` from "
                              f"{meta.get('exported_from')}): it drives `wsrl datagen --checkpoint`, but training "
                              f"from it needs the full checkpoint it was exported from")
    return _restore(_template(meta), Path(directory) / AGENT_FILE), meta


def load_acting(directory: str | Path, *, obs_dim: int | None = None, action_dim: int | None = None):
    """The agent of a full or a policy checkpoint, for acting only: a policy checkpoint's other parts (critic,
    optimiser states) are freshly initialised and meaningless."""
    meta = _fitting_meta(directory, obs_dim, action_dim)
    template = _template(meta)
    if meta.get("contents") != "policy":
        return _restore(template, Path(directory) / AGENT_FILE)
    params = _restore(template.actor.params, Path(directory) / POLICY_FILE)
    return template.replace(actor=template.actor.replace(params=params))


def export_policy(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a policy checkpoint at `out`: the policy's parameters of `checkpoint` and its metadata."""
    agent, meta = load(checkpoint)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out} already exists and is not an empty directory: choose another output directory")
    out.mkdir(parents=True, exist_ok=True)
    state = serialization.to_state_dict(jax.device_get(agent.actor.params))
    atomic.write_bytes(out / POLICY_FILE, serialization.msgpack_serialize(state))
    meta = {**meta, "contents": "policy", "exported_from": str(Path(checkpoint).resolve())}
    atomic.write_bytes(out / META_FILE, json.dumps(meta, indent=2).encode())
    return out


