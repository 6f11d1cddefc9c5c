"""Run configurations, the paper's per-family presets (SPEC §4) and the fine-tuning methods (SPEC §5).

A user-facing config (`PretrainConfig`, `FinetuneConfig`) holds what can be typed on the command line; `None`
means "the preset's / method's value". `resolve_*` turns it into the learner config actually trained, which is
saved next to every run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from wsrl.agents import ActorCriticConfig, IQLConfig
from wsrl.agents.sac import check_choice
from wsrl.errors import ConfigError
from wsrl.io.checkpoint import INIT_CHOICES

ALGORITHMS = ("cal-ql", "cql", "iql")
METHODS = ("wsrl", "sac-fast", "rlpd", "jsrl", "so2", "calql-ft", "cql-ft", "iql-ft")
WARMUP_SOURCES = ("policy", "uniform", "dataset", "none")


def choose(name: str, value: str, choices) -> str:
    check_choice(name, value, choices)
    return value


@dataclass(frozen=True)
class Preset:
    """The paper's hyper-parameters for one task family (authors' configs, SPEC §4)."""

    critic_hidden_dims: tuple[int, ...]
    actor_hidden_dims: tuple[int, ...]
    state_dependent_std: bool
    pretrain_steps: int
    cql_alpha: float
    cql_lagrange: bool
    cql_importance_sample: bool
    wsrl_backup: str  # TD backup of the online SAC learner
    rlpd_critic_subsample: int  # RLPD / SAC-fast use 1 of 10 on antmaze (more optimism), 2 elsewhere
    iql_expectile: float
    iql_beta: float
    retention_fraction: float  # offline share of each batch when a baseline retains the data
    max_episode_steps: int


PRESETS: dict[str, Preset] = {
    "antmaze": Preset((256, 256, 256, 256), (256, 256), False, 1_000_000, 5.0, True, True, "max_over_actions", 1,
                      0.9, 10.0, 0.5, 1000),
    "kitchen": Preset((512, 512, 512), (512, 512, 512), True, 250_000, 5.0, False, False, "min", 2, 0.7, 0.5, 0.25,
                      280),
    "adroit": Preset((512, 512, 512), (512, 512), True, 20_000, 1.0, False, True, "min", 2, 0.7, 0.5, 0.5, 200),
    "locomotion": Preset((256, 256), (256, 256), True, 250_000, 5.0, False, True, "min", 2, 0.7, 3.0, 0.5, 1000),
}


def _help(text: str, **kw) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class CommonConfig:
    task: str = _help("task id (see `wsrl tasks`)", default="pointmaze-umaze-v0")
    seed: int = _help("random seed", default=0)
    run_dir: str | None = _help("run directory (default: runs/<task>/<method>/seed<seed>)", default=None)
    dataset: str | None = _help("dataset file or Minari id (default: the task's dataset path)", default=None)
    eval_interval: int = _help("steps between evaluations", default=5_000)
    eval_episodes: int = _help("episodes per evaluation (deterministic policy)", default=20)
    batch_size: int = _help("minibatch size", default=256)
    save_interval: int = _help("steps between resumable snapshots", default=10_000)
    resume: bool = _help("continue an interrupted run in run_dir", default=False)
    progress: bool = _help("show a progress line", default=True)
    critic_hidden_dims: tuple[int, ...] | None = _help("critic hidden sizes (default: family preset)", default=None)
    discount: float = _help("discount factor gamma (the paper uses 0.99 everywhere)", default=0.99)
    init_temperature: float = _help("initial SAC temperature alpha of a new learner (a loaded policy keeps its "
                                    "own)", default=1.0)
    actor_hidden_dims: tuple[int, ...] | None = _help("actor hidden sizes (default: family preset)", default=None)


@dataclass
class PretrainConfig(CommonConfig):
    algorithm: str = _help("offline algorithm: cal-ql, cql or iql", default="cal-ql")
    steps: int | None = _help("gradient steps (default: family preset)", default=None)
    num_critics: int = _help("Q-ensemble size; 10 so that WSRL can load the whole ensemble", default=10)
    critic_layer_norm: bool = _help("LayerNorm in the critic (WSRL fine-tuning expects it)", default=True)
    actor_layer_norm: bool = _help("LayerNorm in the actor (WSRL fine-tuning expects it)", default=True)
    cql_alpha: float | None = _help("CQL regulariser weight (default: family preset)", default=None)


@dataclass
class FinetuneConfig(CommonConfig):
    method: str = _help("fine-tuning method: " + ", ".join(METHODS), default="wsrl")
    label: str | None = _help("name of this variant in run directories, plots and tables (default: the method)",
                              default=None)
    checkpoint: str | None = _help("pre-trained checkpoint directory (methods that start from one)", default=None)
    steps: int = _help("online environment steps", default=100_000)
    warmup_steps: int | None = _help("warmup length K (default: method's; 5000 for wsrl)", default=None)
    warmup_source: str | None = _help("warmup data: policy (frozen pre-trained), uniform, dataset, none",
                                      default=None)
    offline_fraction: float | None = _help("share of each batch drawn from the offline data (0 = no retention)",
                                           default=None)
    init: str | None = _help("initialise from the checkpoint: both, policy, critic, none", default=None)
    freeze_policy_steps: int = _help("steps after warmup with no actor update", default=0)
    utd: int | None = _help("critic updates per environment step (default: method's)", default=None)
    num_critics: int | None = _help("Q-ensemble size (default: method's)", default=None)
    layer_norm: bool | None = _help("LayerNorm in actor and critic (default: method's)", default=None)
    diagnostic_samples: int = _help("held-out offline transitions kept for diagnostics only", default=1_000)
    diagnostic_interval: int | None = _help("steps between diagnostics records (default: eval_interval)",
                                            default=None)
    save_replay: bool = _help("write the final replay buffer as a D4RL HDF5 dataset, <run-dir>/replay.hdf5 "
                              "(how 'medium-replay' datasets are made)", default=False)
    jsrl_horizon_decay_steps: int = _help("JSRL: steps over which the roll-in probability decays to 0",
                                          default=100_000)


@dataclass(frozen=True)
class Method:
    """How a fine-tuning method starts, collects and learns (SPEC §5)."""

    learner: str  # "sac" (fast online SAC) or "checkpoint" (continue the pre-training algorithm)
    init: str
    warmup_steps: int
    warmup_source: str
    offline_fraction: float | str  # "retention" -> the family's retention fraction
    utd: int
    jsrl: bool = False
    target_noise_std: float = 0.0


METHOD_TABLE: dict[str, Method] = {
    "wsrl": Method("sac", "both", 5_000, "policy", 0.0, 4),
    "sac-fast": Method("sac", "none", 5_000, "uniform", 0.0, 4),
    "rlpd": Method("sac", "none", 5_000, "uniform", 0.5, 4),
    "jsrl": Method("sac", "policy", 0, "none", 0.0, 4, jsrl=True),
    # SO2: noise N(0, variance 0.3) on target actions, clipped to +-0.6 (paper App. I).
    "so2": Method("sac", "both", 0, "none", 0.0, 4, target_noise_std=0.3 ** 0.5),
    "calql-ft": Method("checkpoint", "both", 0, "none", 0.0, 1),
    "cql-ft": Method("checkpoint", "both", 0, "none", 0.0, 1),
    "iql-ft": Method("checkpoint", "both", 0, "none", 0.0, 1),
}
CHECKPOINT_ALGORITHM = {"calql-ft": "cal-ql", "cql-ft": "cql", "iql-ft": "iql"}


def learner_config_for_pretrain(cfg: PretrainConfig, preset: Preset):
    """The offline learner of the paper for this family, with this run's overrides."""
    critic = tuple(cfg.critic_hidden_dims or preset.critic_hidden_dims)
    actor = tuple(cfg.actor_hidden_dims or preset.actor_hidden_dims)
    if cfg.algorithm == "iql":
        return IQLConfig(critic_hidden_dims=critic, value_hidden_dims=critic, actor_hidden_dims=actor,
                         critic_layer_norm=cfg.critic_layer_norm, actor_layer_norm=cfg.actor_layer_norm,
                         num_critics=cfg.num_critics, expectile=preset.iql_expectile, beta=preset.iql_beta,
                         discount=cfg.discount)
    # CQL / Cal-QL: the TD target is the min over all critics with the max-target backup (CQL's default).
    return ActorCriticConfig(
        critic_hidden_dims=critic, actor_hidden_dims=actor, critic_layer_norm=cfg.critic_layer_norm,
        actor_layer_norm=cfg.actor_layer_norm, state_dependent_std=preset.state_dependent_std,
        num_critics=cfg.num_critics, critic_subsample=cfg.num_critics, backup="max_over_actions",
        regularizer="calql" if cfg.algorithm == "cal-ql" else "cql",
        cql_alpha=preset.cql_alpha if cfg.cql_alpha is None else cfg.cql_alpha,
        cql_lagrange=preset.cql_lagrange and cfg.cql_alpha is None,
        cql_importance_sample=preset.cql_importance_sample, discount=cfg.discount,
        init_temperature=cfg.init_temperature)


def validate_common(cfg: CommonConfig) -> None:
    for name in ("eval_interval", "eval_episodes", "batch_size", "save_interval"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be a positive integer")
    if not cfg.init_temperature > 0:
        raise ConfigError(f"init_temperature={cfg.init_temperature} must be > 0")
    if not 0.0 <= cfg.discount < 1.0:
        raise ConfigError(f"discount={cfg.discount} must be in [0, 1)")


def validate_pretrain(cfg: PretrainConfig) -> None:
    validate_common(cfg)
    choose("algorithm", cfg.algorithm, ALGORITHMS)
    if cfg.steps is not None and cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps} must be a positive integer")
    if cfg.num_critics < 1:
        raise ConfigError(f"num_critics={cfg.num_critics} must be >= 1")


@dataclass(frozen=True)
class ResolvedFinetune:
    """Every decision of a fine-tuning run, after presets and method defaults."""

    method: Method
    init: str
    warmup_steps: int
    warmup_source: str
    offline_fraction: float
    utd: int
    learner: Any  # ActorCriticConfig for "sac"; None -> take the checkpoint's learner config


def resolve_finetune(cfg: FinetuneConfig, preset: Preset) -> ResolvedFinetune:
    validate_common(cfg)
    method = METHOD_TABLE[choose("method", cfg.method, METHODS)]
    init = choose("init", cfg.init or method.init, INIT_CHOICES)
    warmup_source = choose("warmup source", cfg.warmup_source or method.warmup_source, WARMUP_SOURCES)
    warmup = method.warmup_steps if cfg.warmup_steps is None else cfg.warmup_steps
    if warmup_source == "none":
        warmup = 0
    fraction = method.offline_fraction if cfg.offline_fraction is None else cfg.offline_fraction
    fraction = preset.retention_fraction if fraction == "retention" else float(fraction)
    utd = method.utd if cfg.utd is None else cfg.utd
    problems = [f"{n}={v} must be {rule}" for n, v, ok, rule in [
        ("steps", cfg.steps, cfg.steps > 0, "> 0"),
        ("warmup_steps", warmup, warmup >= 0, ">= 0"),
        ("offline_fraction", fraction, 0.0 <= fraction <= 1.0, "in [0, 1]"),
        ("utd", utd, utd >= 1, ">= 1"),
        ("freeze_policy_steps", cfg.freeze_policy_steps, cfg.freeze_policy_steps >= 0, ">= 0"),
        ("diagnostic_samples", cfg.diagnostic_samples, cfg.diagnostic_samples >= 0, ">= 0"),
        ("diagnostic_interval", cfg.diagnostic_interval, (cfg.diagnostic_interval or 1) > 0, "> 0"),
    ] if not ok]
    if problems:
        raise ConfigError("; ".join(problems))
    if init != "none" and cfg.checkpoint is None:
        raise ConfigError(f"method {cfg.method!r} with init={init!r} starts from a pre-trained checkpoint: pass "
                          f"--checkpoint DIR (make one with `wsrl pretrain --task {cfg.task}`), or --init none")
    if warmup_source == "policy" and warmup > 0 and cfg.checkpoint is None:
        raise ConfigError("warmup_source='policy' rolls out the frozen pre-trained policy: pass --checkpoint DIR "
                          "or choose --warmup-source uniform")
    learner = None
    if method.learner == "sac":
        num_critics = 10 if cfg.num_critics is None else cfg.num_critics
        learner = ActorCriticConfig(
            critic_hidden_dims=tuple(cfg.critic_hidden_dims or preset.critic_hidden_dims),
            actor_hidden_dims=tuple(cfg.actor_hidden_dims or preset.actor_hidden_dims),
            critic_layer_norm=True if cfg.layer_norm is None else cfg.layer_norm,
            actor_layer_norm=True if cfg.layer_norm is None else cfg.layer_norm,
            state_dependent_std=preset.state_dependent_std,
            num_critics=num_critics,
            critic_subsample=min(2 if cfg.method == "wsrl" else preset.rlpd_critic_subsample, num_critics),
            backup=preset.wsrl_backup if cfg.method == "wsrl" else "min",
            target_noise_std=method.target_noise_std, discount=cfg.discount, init_temperature=cfg.init_temperature)
    return ResolvedFinetune(method, init, warmup, warmup_source, fraction, utd, learner)


def to_jsonable(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj
