"""Run configurations, the paper's per-family presets and the fine-tuning methods (docs/methods.md).

A user-facing config (`PretrainConfig`, `FinetuneConfig`) holds what can be typed on the command line; `None`
means "the preset's / method's value". `resolve_*` turns it into the learner config actually trained, which is
saved next to every run.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsrl.agents import ActorCriticConfig, IQLConfig
from wsrl.agents.sac import check_choice
from wsrl.errors import ConfigError
from wsrl.agents.transfer import INIT_CHOICES

ALGORITHMS = ("cal-ql", "cql", "iql")
METHODS = ("wsrl", "sac-fast", "rlpd", "jsrl", "so2", "calql-ft", "cql-ft", "iql-ft")
WARMUP_SOURCES = ("policy", "uniform", "dataset", "none")


def choose(name: str, value: str, choices) -> str:
    check_choice(name, value, choices)
    return value


@dataclass(frozen=True)
class Preset:
    """The paper's hyper-parameters for one task family (the authors' `train_config.py` and launch scripts)."""

    critic_hidden_dims: tuple[int, ...]
    actor_hidden_dims: tuple[int, ...]
    state_dependent_std: bool
    final_init_scale: float | None  # authors' kernel_scale_final on the last hidden layer
    pretrain_algorithm: str  # the offline algorithm WSRL starts from (locomotion: CQL, no returns-to-go)
    pretrain_steps: int
    cql_alpha: float
    cql_lagrange: bool
    cql_importance_sample: bool
    online_backup: str  # TD backup of the online SAC learners (WSRL, SAC-fast, RLPD, JSRL, SO2)
    rlpd_critic_subsample: int  # RLPD, SAC-fast, JSRL, SO2 use 1 of 10 on antmaze (more optimism), 2 elsewhere
    iql_hidden_dims: tuple[int, ...]
    iql_expectile: float
    iql_beta: float
    iql_actor_dropout: float
    retention_fraction: float  # offline share of each batch when a baseline retains the data (paper App. I)


PRESETS: dict[str, Preset] = {
    "antmaze": Preset(
        critic_hidden_dims=(256, 256, 256, 256), actor_hidden_dims=(256, 256), state_dependent_std=False,
        final_init_scale=1e-2, pretrain_algorithm="cal-ql", pretrain_steps=1_000_000, cql_alpha=5.0,
        cql_lagrange=True, cql_importance_sample=True, online_backup="max_over_actions", rlpd_critic_subsample=1,
        iql_hidden_dims=(256, 256), iql_expectile=0.9, iql_beta=10.0, iql_actor_dropout=0.0,
        retention_fraction=0.5),
    "kitchen": Preset(
        critic_hidden_dims=(512, 512, 512), actor_hidden_dims=(512, 512, 512), state_dependent_std=True,
        final_init_scale=None, pretrain_algorithm="cal-ql", pretrain_steps=250_000, cql_alpha=5.0,
        cql_lagrange=False, cql_importance_sample=False, online_backup="min", rlpd_critic_subsample=2,
        iql_hidden_dims=(256, 256), iql_expectile=0.7, iql_beta=0.5, iql_actor_dropout=0.1,
        retention_fraction=0.25),
    "adroit": Preset(
        critic_hidden_dims=(512, 512, 512), actor_hidden_dims=(512, 512), state_dependent_std=True,
        final_init_scale=1e-2, pretrain_algorithm="cal-ql", pretrain_steps=20_000, cql_alpha=1.0,
        cql_lagrange=False, cql_importance_sample=True, online_backup="min", rlpd_critic_subsample=2,
        iql_hidden_dims=(256, 256), iql_expectile=0.7, iql_beta=0.5, iql_actor_dropout=0.1,
        retention_fraction=0.5),
    "locomotion": Preset(
        critic_hidden_dims=(256, 256), actor_hidden_dims=(256, 256), state_dependent_std=True,
        final_init_scale=1e-2, pretrain_algorithm="cql", pretrain_steps=250_000, cql_alpha=5.0,
        cql_lagrange=False, cql_importance_sample=True, online_backup="min", rlpd_critic_subsample=2,
        iql_hidden_dims=(256, 256), iql_expectile=0.7, iql_beta=3.0, iql_actor_dropout=0.0,
        retention_fraction=0.5),
}


def _help(text: str, **kw) -> Any:
    return field(metadata={"help": text}, **kw)


DEFAULT_TASK = "pointmaze-umaze-v0"  # the task of a config that names neither --task nor --env
# Options that describe a user environment (--env); a registry task has its own values for them.
USER_ENV_OPTIONS = ("env_kwargs", "env_module", "max_episode_steps", "family", "reward_scale", "reward_bias",
                    "sparse_reward", "success_key")


@dataclass
class CommonConfig:
    task: str | None = _help("task id (see `wsrl tasks`); or --env for your own environment", default=None)
    seed: int = _help("random seed", default=0)
    seeds: tuple[int, ...] | None = _help("several seeds trained together in one process, e.g. 0,1,2 (each writes "
                                          "its own run directory, <run-dir>/seed<s>; default: --seed alone)",
                                          default=None)
    run_dir: str | None = _help("run directory (default: runs/<task>/<method>/seed<seed>; with --seeds, "
                                "<run-dir>/seed<s> or the path with {seed} filled in)", default=None)
    dataset: str | None = _help("dataset file or Minari id (default: the task's dataset path)", default=None)
    eval_interval: int = _help("steps between evaluations (the paper's: 20k)", default=20_000)
    eval_episodes: int = _help("episodes per evaluation (deterministic policy)", default=20)
    batch_size: int = _help("minibatch size", default=256)
    save_interval: int = _help("steps between resumable snapshots", default=10_000)
    resume: bool = _help("continue an interrupted run in run_dir", default=False)
    progress: bool = _help("show a progress line", default=True)
    critic_hidden_dims: tuple[int, ...] | None = _help("critic hidden sizes (default: family preset)", default=None)
    discount: float = _help("discount factor gamma (the paper uses 0.99 everywhere)", default=0.99)
    init_temperature: float = _help("initial SAC temperature alpha of a new learner (a loaded policy keeps its "
                                    "own)", default=1.0)
    temperature_lr: float = _help("learning rate of the SAC temperature (the authors': 1e-4)", default=1e-4)
    actor_hidden_dims: tuple[int, ...] | None = _help("actor hidden sizes (default: family preset)", default=None)
    subsample_with_replacement: bool = _help("draw the random critic subsets with replacement (the authors' "
                                             "code) instead of without (REDQ)", default=False)
    final_init_scale: float | None = _help("orthogonal init scale of the last hidden layer of new actor-critic "
                                           "networks (default: family preset, the authors' kernel_scale_final: "
                                           "0.01 on antmaze, adroit, locomotion; sqrt 2 like the other layers on "
                                           "kitchen)", default=None)
    # ---- your own environment (docs/your-own-environment.md) ----
    env: str | None = _help("a Gymnasium environment id to train on instead of a registry --task (needs --family "
                            "and, for pre-training, --dataset)", default=None)
    env_kwargs: dict = _help("with --env: keyword arguments of gym.make, as a JSON object, e.g. "
                             "'{\"reset_noise_scale\": 0.1}'", default_factory=dict)
    env_module: str | None = _help("with --env: a Python module imported before gym.make (e.g. the package that "
                                   "registers the environment)", default=None)
    max_episode_steps: int | None = _help("with --env: the episode time limit (default: the environment "
                                          "spec's)", default=None)
    family: str | None = _help("with --env (required): the hyper-parameter preset, one of "
                               + ", ".join(PRESETS), default=None)
    reward_scale: float = _help("with --env: training reward = reward_scale * reward + reward_bias", default=1.0)
    reward_bias: float = _help("with --env: see --reward-scale", default=0.0)
    sparse_reward: float | None = _help("with --env: the per-step failure reward of a sparse task AFTER the "
                                        "scale and bias (Cal-QL's Monte-Carlo returns of never-successful "
                                        "episodes use it; default: dense rewards)", default=None)
    success_key: str | None = _help("with --env: the `info` key that is true on success; the score is then "
                                    "the success rate (default: the mean episode return is the score)",
                                    default=None)

    def __post_init__(self):
        # Neither --task nor --env: the environment a Minari --dataset records (wsrl.tasks.user.recover_env),
        # else the default task.
        if self.task is None and self.env is None and not names_minari_dataset(self.dataset):
            self.task = DEFAULT_TASK

    @property
    def task_label(self) -> str:
        """The name runs of this config are filed under: the task id, or the (filesystem-safe) --env id (for a
        Minari dataset's recorded environment not yet recovered, the dataset's name)."""
        if self.env is None and self.task is None:
            return safe_env_name(Path(str(self.dataset)).name)
        return safe_env_name(self.env) if self.env is not None else self.task


NOT_MINARI_SUFFIXES = (".hdf5", ".h5", ".npz")


def names_minari_dataset(dataset: str | None) -> bool:
    """Whether `--dataset` names a Minari dataset (an id or a directory) rather than a file, as the loaders
    dispatch (wsrl.data.loaders.load_dataset). Cheap: nothing is opened."""
    if dataset is None or str(dataset).startswith("<in-memory"):  # (Transitions passed through the API)
        return False
    path = Path(dataset).expanduser()
    return path.suffix not in NOT_MINARI_SUFFIXES and not path.is_file()


def safe_env_name(env_id: str) -> str:
    """A Gymnasium id as a directory name: 'my_pkg:Thing/Arm-v0' -> 'my_pkg-Thing-Arm-v0'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", env_id).strip("-.")
    return name or "env"


@dataclass
class PretrainConfig(CommonConfig):
    algorithm: str | None = _help("offline algorithm: cal-ql, cql or iql (default: the family's; locomotion "
                                  "has no returns-to-go and uses cql)", default=None)
    steps: int | None = _help("gradient steps (default: family preset)", default=None)
    num_critics: int = _help("Q-ensemble size; 10 so that WSRL can load the whole ensemble", default=10)
    critic_subsample: int | None = _help("CQL / Cal-QL: critics in the TD target's min and in the conservative "
                                         "term, each a random subset (default: 2, the authors' --use_redq; all "
                                         "of 2)", default=None)
    critic_layer_norm: bool = _help("LayerNorm in the critic (WSRL fine-tuning expects it)", default=True)
    actor_layer_norm: bool = _help("LayerNorm in the actor (WSRL fine-tuning expects it)", default=True)
    cql_alpha: float | None = _help("CQL regulariser weight (default: family preset)", default=None)
    iql_tanh_mean: bool = _help("IQL: the policy Gaussian's mean tanh-squashed and the actor shaped like SAC's, so "
                                "that WSRL can start from it and acts alike (paper Fig. 24; set for you when "
                                "fine-tuning pre-trains); default: the authors' Gaussian", default=False)


@dataclass
class FinetuneConfig(CommonConfig):
    method: str = _help("fine-tuning method: " + ", ".join(METHODS), default="wsrl")
    label: str | None = _help("name of this variant in run directories, plots and tables (default: the method)",
                              default=None)
    checkpoint: str | None = _help("pre-trained checkpoint directory (methods that start from one); with --seeds, "
                                   "{seed} in the path is filled in per seed", default=None)
    steps: int = _help("online environment steps (the authors' default: 500k)", default=500_000)
    warmup_steps: int | None = _help("warmup length K (default: method's; 5000 for wsrl)", default=None)
    warmup_source: str | None = _help("warmup data: policy (frozen pre-trained), uniform, dataset, none",
                                      default=None)
    offline_fraction: float | None = _help("share of each batch drawn from the offline data (0 = no retention)",
                                           default=None)
    retain: bool = _help("keep the offline data: each batch draws the family's retention share (paper App. I: "
                         "25% on kitchen, 50% elsewhere)", default=False)
    update_after: int | None = _help("no update until the replay buffer holds more than this many transitions "
                                     "(default, the authors' rule: one batch of online rows, utd x batch_size x "
                                     "online share, and a whole episode for Cal-QL)", default=None)
    init: str | None = _help("initialise from the checkpoint: both, policy, critic, none", default=None)
    freeze_policy_steps: int = _help("steps after the first update with no actor update", default=0)
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
    """How a fine-tuning method starts, collects and learns (docs/methods.md)."""

    learner: str  # "sac" (fast online SAC) or "checkpoint" (continue the pre-training algorithm)
    init: str
    warmup_steps: int
    warmup_source: str
    offline_fraction: float
    utd: int
    # critics in the target's min; None: the family's RLPD subset (1 of 10 on antmaze, 2 elsewhere)
    critic_subsample: int | None = None
    algorithm: str | None = None  # the offline algorithm a "checkpoint" learner continues
    jsrl: bool = False
    target_noise_std: float = 0.0


METHOD_TABLE: dict[str, Method] = {
    "wsrl": Method(learner="sac", init="both", warmup_steps=5_000, warmup_source="policy", offline_fraction=0.0,
                   utd=4, critic_subsample=2),
    "sac-fast": Method(learner="sac", init="none", warmup_steps=5_000, warmup_source="uniform",
                       offline_fraction=0.0, utd=4),
    "rlpd": Method(learner="sac", init="none", warmup_steps=5_000, warmup_source="uniform", offline_fraction=0.5,
                   utd=4),
    "jsrl": Method(learner="sac", init="policy", warmup_steps=0, warmup_source="none", offline_fraction=0.0, utd=4,
                   jsrl=True),
    # SO2: noise N(0, variance 0.3) on target actions, clipped to +-0.6 (paper App. I).
    "so2": Method(learner="sac", init="both", warmup_steps=0, warmup_source="none", offline_fraction=0.0, utd=4,
                  target_noise_std=0.3 ** 0.5),
    "calql-ft": Method(learner="checkpoint", init="both", warmup_steps=0, warmup_source="none",
                       offline_fraction=0.0, utd=1, algorithm="cal-ql"),
    "cql-ft": Method(learner="checkpoint", init="both", warmup_steps=0, warmup_source="none", offline_fraction=0.0,
                     utd=1, algorithm="cql"),
    "iql-ft": Method(learner="checkpoint", init="both", warmup_steps=0, warmup_source="none", offline_fraction=0.0,
                     utd=1, algorithm="iql"),
}
CHECKPOINT_ALGORITHM = {name: m.algorithm for name, m in METHOD_TABLE.items() if m.algorithm}
# Baselines that continue their offline learner start from the authors' baseline networks (2 critics, no
# LayerNorm); the SAC methods start from the ensemble WSRL loads (10 LayerNorm critics).
BASELINE_ENSEMBLE = {"num_critics": 2, "layer_norm": False}
WSRL_ENSEMBLE = {"num_critics": 10, "layer_norm": True}


def final_init_scale(cfg: CommonConfig, preset: Preset) -> float | None:
    return preset.final_init_scale if cfg.final_init_scale is None else cfg.final_init_scale


def pretrain_algorithm(cfg: PretrainConfig, preset: Preset) -> str:
    return cfg.algorithm or preset.pretrain_algorithm


def learner_config_for_pretrain(cfg: PretrainConfig, preset: Preset):
    """The offline learner of the paper for this family, with this run's overrides."""
    algorithm = pretrain_algorithm(cfg, preset)
    actor = tuple(cfg.actor_hidden_dims or preset.actor_hidden_dims)
    if cfg.iql_tanh_mean and algorithm != "iql":
        raise ConfigError(f"--iql-tanh-mean shapes an IQL policy, and this run pre-trains with {algorithm} (whose "
                          f"policy is a tanh-Gaussian already): drop it, or pass --algorithm iql")
    if algorithm == "iql":
        critic = tuple(cfg.critic_hidden_dims or preset.iql_hidden_dims)
        return IQLConfig(critic_hidden_dims=critic, value_hidden_dims=critic,
                         actor_hidden_dims=tuple(cfg.actor_hidden_dims or (
                             preset.actor_hidden_dims if cfg.iql_tanh_mean else preset.iql_hidden_dims)),
                         critic_layer_norm=cfg.critic_layer_norm, actor_layer_norm=cfg.actor_layer_norm,
                         actor_dropout=preset.iql_actor_dropout, num_critics=cfg.num_critics,
                         tanh_mean=cfg.iql_tanh_mean,
                         state_dependent_std=preset.state_dependent_std and cfg.iql_tanh_mean,
                         expectile=preset.iql_expectile, beta=preset.iql_beta, discount=cfg.discount)
    # CQL / Cal-QL with CQL's max-target backup. An ensemble is trained as the authors' --use_redq does: the
    # target is the min over 2 random target critics and the conservative term acts on 2 random critics.
    subsample = cfg.critic_subsample if cfg.critic_subsample is not None else min(2, cfg.num_critics)
    return ActorCriticConfig(
        critic_hidden_dims=tuple(cfg.critic_hidden_dims or preset.critic_hidden_dims), actor_hidden_dims=actor,
        critic_layer_norm=cfg.critic_layer_norm, actor_layer_norm=cfg.actor_layer_norm,
        state_dependent_std=preset.state_dependent_std, final_init_scale=final_init_scale(cfg, preset),
        num_critics=cfg.num_critics, critic_subsample=subsample,
        subsample_with_replacement=cfg.subsample_with_replacement, backup="max_over_actions",
        regularizer="calql" if algorithm == "cal-ql" else "cql",
        cql_alpha=preset.cql_alpha if cfg.cql_alpha is None else cfg.cql_alpha,
        cql_lagrange=preset.cql_lagrange and cfg.cql_alpha is None,
        cql_importance_sample=preset.cql_importance_sample, discount=cfg.discount,
        init_temperature=cfg.init_temperature, temperature_lr=cfg.temperature_lr)


def method_row(name: str) -> Method:
    return METHOD_TABLE[choose("method", name, METHODS)]


def needs_pretraining(cfg: FinetuneConfig) -> bool:
    method = method_row(cfg.method)
    return (cfg.init or method.init) != "none" or (cfg.warmup_source or method.warmup_source) == "policy"


def pretrain_config_for(cfg: FinetuneConfig, algorithm: str | None = None,
                        steps: int | None = None) -> PretrainConfig:
    """The pre-training a fine-tuning run starts from: every common option copied, the method's ensemble
    (fine-tuning's --num-critics / --layer-norm when given) and algorithm."""
    method = method_row(cfg.method)
    if method.algorithm and algorithm not in (None, method.algorithm):
        raise ConfigError(f"method {cfg.method!r} continues {method.algorithm} training; drop --algorithm "
                          f"{algorithm}")
    ensemble = BASELINE_ENSEMBLE if method.learner == "checkpoint" else WSRL_ENSEMBLE
    num_critics = ensemble["num_critics"] if cfg.num_critics is None else cfg.num_critics
    layer_norm = ensemble["layer_norm"] if cfg.layer_norm is None else cfg.layer_norm
    common = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(CommonConfig)}
    # a SAC learner that starts from an IQL policy needs its mean tanh-squashed, as its own; every SAC method
    # gets it, whatever it initialises, so that the initialisation ablations share one pre-training
    sac_learner = method.learner == "sac"
    return PretrainConfig(**common, algorithm=method.algorithm or algorithm, steps=steps,
                          num_critics=num_critics, critic_layer_norm=layer_norm, actor_layer_norm=layer_norm,
                          iql_tanh_mean=sac_learner and (method.algorithm or algorithm) == "iql")


def task_flag(cfg: CommonConfig) -> str:
    """The options naming this config's task on a command line: `--task T` or `--env E --family F`."""
    return f"--env {cfg.env} --family {cfg.family}" if cfg.env is not None else f"--task {cfg.task}"


def validate_task_options(cfg: CommonConfig) -> None:
    """--task or --env (not both), or a Minari --dataset whose environment is recovered; --env and a recovered
    environment need --family; the user-environment options go with them only."""
    if cfg.env is None and cfg.task is None:  # the environment is recovered from the Minari dataset
        if cfg.family is None:
            raise ConfigError(f"--dataset {cfg.dataset} (a Minari dataset, no --task or --env): its environment is "
                              f"recovered from the dataset, and it needs --family, the hyper-parameter preset to "
                              f"train with: one of {', '.join(PRESETS)} (docs/methods.md; it is never guessed)")
        choose("family", cfg.family, tuple(PRESETS))
        return
    if cfg.env is not None:
        if cfg.task is not None:
            raise ConfigError(f"pass either --task {cfg.task} (a registry task) or --env {cfg.env} (your own "
                              f"Gymnasium environment), not both")
        if not cfg.env.strip():
            raise ConfigError("--env is empty; pass a Gymnasium id such as InvertedPendulum-v5")
        if cfg.family is None:
            raise ConfigError(f"--env {cfg.env} needs --family: the hyper-parameter preset to train with, one of "
                              f"{', '.join(PRESETS)} (docs/methods.md; it is never guessed)")
        choose("family", cfg.family, tuple(PRESETS))
        if not isinstance(cfg.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a dict of gym.make keyword arguments, got "
                              f"{type(cfg.env_kwargs).__name__}")
        if cfg.max_episode_steps is not None and cfg.max_episode_steps <= 0:
            raise ConfigError(f"max_episode_steps={cfg.max_episode_steps} must be a positive integer")
        if not (math.isfinite(cfg.reward_scale) and cfg.reward_scale != 0 and math.isfinite(cfg.reward_bias)):
            raise ConfigError(f"reward_scale={cfg.reward_scale} must be finite and non-zero and reward_bias="
                              f"{cfg.reward_bias} finite")
        return
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(CommonConfig) if f.name in USER_ENV_OPTIONS}
    given = [n for n in USER_ENV_OPTIONS if getattr(cfg, n) != defaults[n]]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ConfigError(f"{flags} describe(s) your own environment and go(es) with --env; task {cfg.task!r} "
                          f"has its own environment, family and reward convention")


def validate_common(cfg: CommonConfig) -> None:
    validate_task_options(cfg)
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed} must be >= 0")
    if cfg.seeds is not None and (not cfg.seeds or min(cfg.seeds) < 0 or len(set(cfg.seeds)) != len(cfg.seeds)):
        raise ConfigError(f"seeds={cfg.seeds} must be distinct integers >= 0, e.g. 0,1,2")
    for name in ("eval_interval", "eval_episodes", "batch_size", "save_interval"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be a positive integer")
    for name in ("init_temperature", "temperature_lr"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be > 0")
    if not 0.0 <= cfg.discount < 1.0:
        raise ConfigError(f"discount={cfg.discount} must be in [0, 1)")
    if cfg.final_init_scale is not None and not cfg.final_init_scale > 0:
        raise ConfigError(f"final_init_scale={cfg.final_init_scale} must be > 0")


def validate_pretrain(cfg: PretrainConfig) -> None:
    validate_common(cfg)
    if cfg.env is not None and cfg.dataset is None:
        raise ConfigError(f"pre-training on --env {cfg.env} needs --dataset FILE (D4RL-layout HDF5, Minari "
                          f"dataset, or npz; docs/your-own-environment.md)")
    if cfg.algorithm is not None:
        choose("algorithm", cfg.algorithm, ALGORITHMS)
    if cfg.steps is not None and cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps} must be a positive integer")
    if cfg.num_critics < 1:
        raise ConfigError(f"num_critics={cfg.num_critics} must be >= 1")
    if cfg.critic_subsample is not None and not 1 <= cfg.critic_subsample <= cfg.num_critics:
        raise ConfigError(f"critic_subsample={cfg.critic_subsample} must be between 1 and num_critics="
                          f"{cfg.num_critics}")


@dataclass(frozen=True)
class FinetunePlan:
    """Every decision of a fine-tuning run, after presets and method defaults: the loop reads only this."""

    config: FinetuneConfig
    method: Method
    init: str
    warmup_steps: int
    warmup_source: str
    offline_fraction: float
    utd: int
    update_after: int  # updates start once the buffer holds more rows than this (and the warmup is over)
    learner: Any  # ActorCriticConfig for "sac"; None -> take the checkpoint's learner config

    @property
    def warmup_end(self) -> int:
        """Steps taken by the warmup actor (frozen pre-trained policy or uniform actions) before the learner."""
        return self.warmup_steps if self.warmup_source in ("policy", "uniform") else 0

    @property
    def prefill(self) -> int:
        """Rows in the buffer before the first step ('dataset' warmup)."""
        return self.warmup_steps if self.warmup_source == "dataset" else 0

    @property
    def updates_start(self) -> int:
        """The step after which every step makes one update: the warmup is over and the buffer holds more than
        `update_after` rows."""
        return max(self.warmup_end, self.update_after - self.prefill)

    @property
    def uses_dataset(self) -> bool:
        """Whether fine-tuning reads the offline data at all (retention or dataset warmup)."""
        return self.offline_fraction > 0 or self.warmup_source == "dataset"


def default_update_after(cfg: FinetuneConfig, method: Method, fraction: float, utd: int, horizon: int) -> int:
    """The authors' `min_steps_to_update`: a whole batch of online rows, and for Cal-QL a whole episode (its
    MC returns exist only once an episode ends)."""
    rows = math.ceil(utd * cfg.batch_size * (1.0 - fraction))
    return max(rows, horizon) if method.algorithm == "cal-ql" else rows


def resolve_finetune(cfg: FinetuneConfig, preset: Preset, horizon: int) -> FinetunePlan:
    """`horizon`: the task's maximum episode length (for the Cal-QL update start)."""
    validate_common(cfg)
    method = method_row(cfg.method)
    init = choose("init", cfg.init or method.init, INIT_CHOICES)
    warmup_source = choose("warmup source", cfg.warmup_source or method.warmup_source, WARMUP_SOURCES)
    warmup = method.warmup_steps if cfg.warmup_steps is None else cfg.warmup_steps
    if warmup_source == "none":
        if cfg.warmup_steps:
            raise ConfigError(f"warmup_steps={cfg.warmup_steps} with warmup source 'none' (method {cfg.method!r}"
                              f"{'' if cfg.warmup_source else ' by default'}) would be ignored: pass --warmup-source "
                              f"policy, uniform or dataset to warm up, or drop --warmup-steps")
        warmup = 0
    if cfg.retain and cfg.offline_fraction is not None:
        raise ConfigError(f"--retain takes the family's retention share ({preset.retention_fraction}); pass "
                          f"either --retain or --offline-fraction {cfg.offline_fraction}, not both")
    fraction = preset.retention_fraction if cfg.retain else \
        method.offline_fraction if cfg.offline_fraction is None else float(cfg.offline_fraction)
    utd = method.utd if cfg.utd is None else cfg.utd
    problems = [f"{n}={v} must be {rule}" for n, v, ok, rule in [
        ("steps", cfg.steps, cfg.steps > 0, "> 0"),
        ("warmup_steps", warmup, warmup >= 0, ">= 0"),
        ("offline_fraction", fraction, 0.0 <= fraction <= 1.0, "in [0, 1]"),
        ("utd", utd, utd >= 1, ">= 1"),
        ("update_after", cfg.update_after, (cfg.update_after or 0) >= 0, ">= 0"),
        ("freeze_policy_steps", cfg.freeze_policy_steps, cfg.freeze_policy_steps >= 0, ">= 0"),
        ("diagnostic_samples", cfg.diagnostic_samples, cfg.diagnostic_samples >= 0, ">= 0"),
        ("diagnostic_interval", cfg.diagnostic_interval, (cfg.diagnostic_interval or 1) > 0, "> 0"),
    ] if not ok]
    if problems:
        raise ConfigError("; ".join(problems))
    if init != "none" and cfg.checkpoint is None:
        raise ConfigError(f"method {cfg.method!r} with init={init!r} starts from a pre-trained checkpoint: pass "
                          f"--checkpoint DIR (make one with `wsrl pretrain {task_flag(cfg)}`), or --init none")
    if warmup_source == "policy" and warmup > 0 and cfg.checkpoint is None:
        raise ConfigError("warmup_source='policy' rolls out the frozen pre-trained policy: pass --checkpoint DIR "
                          "or choose --warmup-source uniform")
    if cfg.env is not None and cfg.dataset is None and (fraction > 0 or warmup_source == "dataset"):
        raise ConfigError(f"method {cfg.method!r} with these options reads the offline data: with --env "
                          f"{cfg.env} pass --dataset FILE")
    update_after = default_update_after(cfg, method, fraction, utd, horizon) if cfg.update_after is None \
        else cfg.update_after
    learner = None
    if method.learner == "sac":
        num_critics = WSRL_ENSEMBLE["num_critics"] if cfg.num_critics is None else cfg.num_critics
        layer_norm = WSRL_ENSEMBLE["layer_norm"] if cfg.layer_norm is None else cfg.layer_norm
        subsample = method.critic_subsample or preset.rlpd_critic_subsample
        learner = ActorCriticConfig(
            critic_hidden_dims=tuple(cfg.critic_hidden_dims or preset.critic_hidden_dims),
            actor_hidden_dims=tuple(cfg.actor_hidden_dims or preset.actor_hidden_dims),
            critic_layer_norm=layer_norm, actor_layer_norm=layer_norm,
            state_dependent_std=preset.state_dependent_std, final_init_scale=final_init_scale(cfg, preset),
            num_critics=num_critics, critic_subsample=min(subsample, num_critics),
            subsample_with_replacement=cfg.subsample_with_replacement, backup=preset.online_backup,
            target_noise_std=method.target_noise_std, discount=cfg.discount, init_temperature=cfg.init_temperature,
            temperature_lr=cfg.temperature_lr)
    return FinetunePlan(config=cfg, method=method, init=init, warmup_steps=warmup, warmup_source=warmup_source,
                        offline_fraction=fraction, utd=utd, update_after=update_after, learner=learner)


def to_jsonable(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def _base_type(annotation):
    """int | None -> int; tuple[int, ...] -> tuple."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _base_type(args[0])
    return typing.get_origin(annotation) or annotation


def option_types(cls) -> dict[str, type]:
    """Each option of a config dataclass and the type of its values (bool, int, float, str, tuple or dict)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls)}


def run_seeds(cfg: CommonConfig) -> tuple[int, ...]:
    return tuple(cfg.seeds) if cfg.seeds is not None else (cfg.seed,)


def seed_run_dir(cfg: CommonConfig, name: str, seed: int) -> Path:
    """Seed `seed`'s run directory: the given one ({seed} filled in; <run-dir>/seed<s> for a group), else
    runs/<task>/<name>/seed<s>."""
    if cfg.run_dir is None:
        return Path("runs") / cfg.task_label / name / f"seed{seed}"
    if "{seed}" in cfg.run_dir:
        return Path(cfg.run_dir.replace("{seed}", str(seed)))
    return Path(cfg.run_dir) / f"seed{seed}" if cfg.seeds is not None else Path(cfg.run_dir)


def for_seed(cfg, seed: int, run_dir: Path):
    """The single-seed config of one member of a group: what its run directory records (as if run alone)."""
    changes = {"seed": seed, "seeds": None, "run_dir": str(run_dir)}
    if getattr(cfg, "checkpoint", None):
        changes["checkpoint"] = cfg.checkpoint.replace("{seed}", str(seed))
    return dataclasses.replace(cfg, **changes)
