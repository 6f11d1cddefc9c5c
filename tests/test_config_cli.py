"""Configuration resolution, bad values and the command-line help."""

import pytest

from wsrl import cli
from wsrl import config as C


def resolve(family="antmaze", horizon=1000, **kw):
    return C.resolve_finetune(C.FinetuneConfig(**kw), C.PRESETS[family], horizon)


def test_wsrl_defaults_are_the_papers():
    r = resolve(method="wsrl", checkpoint="ckpt")
    assert (r.init, r.warmup_steps, r.warmup_source, r.offline_fraction, r.utd) == ("both", 5000, "policy", 0.0, 4)
    assert r.learner.num_critics == 10 and r.learner.critic_subsample == 2
    assert r.learner.critic_layer_norm and r.learner.actor_layer_norm
    assert r.learner.backup == "max_over_actions"  # antmaze; min of 2 elsewhere
    assert resolve("kitchen", method="wsrl", checkpoint="c").learner.backup == "min"


def test_baselines_resolve_to_their_definitions():
    rlpd = resolve(method="rlpd")
    assert rlpd.init == "none" and rlpd.offline_fraction == 0.5 and rlpd.learner.critic_subsample == 1
    so2 = resolve(method="so2", checkpoint="c")
    assert so2.learner.target_noise_std == pytest.approx(0.3 ** 0.5) and so2.learner.target_noise_clip == 0.6
    assert resolve(method="jsrl", checkpoint="c").method.jsrl
    assert resolve(method="calql-ft", checkpoint="c").learner is None  # continues the checkpoint's learner
    assert resolve("kitchen", method="calql-ft", checkpoint="c").offline_fraction == 0.0


@pytest.mark.parametrize("method", ["sac-fast", "rlpd", "jsrl", "so2"])
def test_online_baselines_use_the_authors_rlpd_antmaze_config(method):
    """The authors' antmaze RLPD launch config: max-over-actions target backup, 1 random critic of 10."""
    r = resolve(method=method, checkpoint="c")
    assert (r.learner.backup, r.learner.critic_subsample, r.learner.num_critics) == ("max_over_actions", 1, 10)
    kitchen = resolve("kitchen", method=method, checkpoint="c")
    assert (kitchen.learner.backup, kitchen.learner.critic_subsample) == ("min", 2)


def test_retention_takes_the_familys_share():
    assert resolve("kitchen", method="calql-ft", checkpoint="c", retain=True).offline_fraction == 0.25
    assert resolve("adroit", method="iql-ft", checkpoint="c", retain=True).offline_fraction == 0.5
    with pytest.raises(C.ConfigError, match="either --retain or --offline-fraction"):
        resolve(method="calql-ft", checkpoint="c", retain=True, offline_fraction=0.1)


@pytest.mark.parametrize("kw, horizon, expected", [
    ({"method": "wsrl", "checkpoint": "c", "warmup_source": "none"}, 1000, 4 * 256),  # one UTD batch of rows
    ({"method": "jsrl", "checkpoint": "c"}, 1000, 1024),
    ({"method": "rlpd"}, 1000, 512),  # half of each batch is offline
    ({"method": "cql-ft", "checkpoint": "c"}, 1000, 256),
    ({"method": "calql-ft", "checkpoint": "c"}, 1000, 1000),  # Cal-QL waits for a whole episode
    ({"method": "calql-ft", "checkpoint": "c"}, 100, 256),
    ({"method": "calql-ft", "checkpoint": "c", "update_after": 0}, 1000, 0),
])
def test_updates_start_after_the_authors_minimum(kw, horizon, expected):
    assert resolve(horizon=horizon, **kw).update_after == expected


def test_online_defaults_are_the_authors():
    cfg = C.FinetuneConfig()
    assert (cfg.steps, cfg.eval_interval, cfg.eval_episodes) == (500_000, 20_000, 20)


def test_each_family_pretrains_with_its_algorithm():
    assert [C.PRESETS[f].pretrain_algorithm for f in ("antmaze", "kitchen", "adroit", "locomotion")] == \
        ["cal-ql", "cal-ql", "cal-ql", "cql"]
    locomotion = C.learner_config_for_pretrain(C.PretrainConfig(), C.PRESETS["locomotion"])
    assert locomotion.regularizer == "cql"


def test_pretraining_an_ensemble_is_redq():
    """10 critics: min over 2 random target critics and a conservative term on 2 (authors' --use_redq)."""
    learner = C.learner_config_for_pretrain(C.PretrainConfig(), C.PRESETS["antmaze"])
    assert (learner.num_critics, learner.critic_subsample, learner.backup) == (10, 2, "max_over_actions")
    two = C.learner_config_for_pretrain(C.PretrainConfig(num_critics=2, critic_layer_norm=False),
                                        C.PRESETS["antmaze"])
    assert two.critic_subsample == 2 and not two.critic_layer_norm


@pytest.mark.parametrize("method, algorithm, critics, layer_norm", [
    ("wsrl", "cal-ql", 10, True), ("so2", "cal-ql", 10, True), ("jsrl", "cal-ql", 10, True),
    ("calql-ft", "cal-ql", 2, False), ("cql-ft", "cql", 2, False), ("iql-ft", "iql", 2, False),
])
def test_run_pretrains_what_the_method_needs(method, algorithm, critics, layer_norm):
    pre = C.pretrain_config_for(C.FinetuneConfig(task="antmaze-medium-play-v2", method=method))
    learner = C.learner_config_for_pretrain(pre, C.PRESETS["antmaze"])
    assert C.pretrain_algorithm(pre, C.PRESETS["antmaze"]) == algorithm
    assert (learner.num_critics, learner.critic_layer_norm, learner.actor_layer_norm) == (critics, layer_norm,
                                                                                        layer_norm)
    wsrl_locomotion = C.pretrain_config_for(C.FinetuneConfig(task="hopper-medium-v2", method="wsrl"))
    assert C.pretrain_algorithm(wsrl_locomotion, C.PRESETS["locomotion"]) == "cql"


def test_iql_uses_the_authors_networks():
    for family, dropout in (("kitchen", 0.1), ("adroit", 0.1), ("antmaze", 0.0), ("locomotion", 0.0)):
        learner = C.learner_config_for_pretrain(C.PretrainConfig(algorithm="iql"), C.PRESETS[family])
        assert learner.critic_hidden_dims == learner.actor_hidden_dims == (256, 256)
        assert learner.actor_dropout == dropout


def test_run_copies_every_common_option_to_pretraining():
    """Every CommonConfig field, set to a non-default value, reaches the pre-training config."""
    import dataclasses
    values = {"task": "hopper-medium-v2", "seed": 7, "seeds": (7, 8), "run_dir": "r", "dataset": "d.hdf5",
              "eval_interval": 123, "eval_episodes": 3, "batch_size": 64, "save_interval": 77, "resume": True,
              "progress": False,
              "critic_hidden_dims": (8, 8), "discount": 0.9, "init_temperature": 0.05, "temperature_lr": 1e-3,
              "actor_hidden_dims": (4,),
              "subsample_with_replacement": True, "final_init_scale": 1.0,
              # your own environment (tests/test_user_env.py); --task and --env cannot go together
              "env": None, "env_kwargs": {"x": 1}, "env_module": "m", "max_episode_steps": 9, "family": "kitchen",
              "reward_scale": 2.0, "reward_bias": -1.0, "sparse_reward": -3.0, "success_key": "ok"}
    assert set(values) == {f.name for f in dataclasses.fields(C.CommonConfig)}, "a common option is untested"
    pre = C.pretrain_config_for(C.FinetuneConfig(method="wsrl", **values))
    assert {k: getattr(pre, k) for k in values} == values


def test_ablation_options_override_the_method():
    r = resolve(method="wsrl", checkpoint="c", warmup_steps=20_000, warmup_source="uniform", utd=20,
                num_critics=4, layer_norm=False, offline_fraction=0.25, init="policy")
    assert (r.warmup_steps, r.warmup_source, r.utd, r.offline_fraction, r.init) == (20_000, "uniform", 20, 0.25,
                                                                                     "policy")
    assert r.learner.num_critics == 4 and not r.learner.critic_layer_norm
    assert resolve(method="wsrl", checkpoint="c", warmup_source="none").warmup_steps == 0


@pytest.mark.parametrize("kw, message", [
    ({"method": "wsrll"}, "Did you mean 'wsrl'"),
    ({"method": "wsrl", "checkpoint": "c", "warmup_source": "polcy"}, "Did you mean 'policy'"),
    ({"method": "wsrl"}, "pass --checkpoint DIR"),
    ({"method": "sac-fast", "offline_fraction": 1.5}, r"offline_fraction=1.5 must be in \[0, 1\]"),
    ({"method": "sac-fast", "utd": 0}, "utd=0 must be >= 1"),
    ({"method": "sac-fast", "eval_interval": 0}, "eval_interval=0 must be a positive integer"),
    ({"method": "sac-fast", "warmup_steps": -1}, "warmup_steps=-1 must be >= 0"),
    ({"method": "sac-fast", "temperature_lr": 0.0}, "temperature_lr=0.0 must be > 0"),
    ({"method": "calql-ft", "checkpoint": "c", "warmup_steps": 1000},
     r"warmup_steps=1000 with warmup source 'none' \(method 'calql-ft' by default\) would be ignored"),
    ({"method": "wsrl", "checkpoint": "c", "warmup_source": "none", "warmup_steps": 5},
     r"warmup_steps=5 with warmup source 'none' \(method 'wsrl'\) would be ignored"),
])
def test_bad_values_are_named(kw, message):
    with pytest.raises(C.ConfigError, match=message):
        resolve(**kw)


def test_pretrain_validation():
    with pytest.raises(C.ConfigError, match="Did you mean 'cal-ql'"):
        C.validate_pretrain(C.PretrainConfig(algorithm="calql"))
    with pytest.raises(C.ConfigError, match="steps=0"):
        C.validate_pretrain(C.PretrainConfig(steps=0))


def test_learner_config_rejects_bad_values():
    from wsrl.agents import ActorCriticConfig
    with pytest.raises(C.ConfigError, match="Did you mean .max_over_actions."):
        ActorCriticConfig(backup="max_over_action")
    with pytest.raises(C.ConfigError, match="critic_subsample=3 must be between 1 and num_critics=2"):
        ActorCriticConfig(num_critics=2, critic_subsample=3)


def test_every_option_is_in_the_help(capsys):
    for command, cls in (("pretrain", C.PretrainConfig), ("finetune", C.FinetuneConfig)):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for field in cls.__dataclass_fields__.values():
            assert "--" + field.name.replace("_", "-") in text
            assert field.metadata["help"].split("(")[0].strip()[:20] in text


def test_cli_parses_types():
    args = cli.build_parser().parse_args(["finetune", "--critic-hidden-dims", "64,64", "--resume",
                                          "--offline-fraction", "0.1", "--layer-norm", "false"])
    cfg = cli.dataclass_from_args(C.FinetuneConfig, args)
    assert cfg.critic_hidden_dims == (64, 64) and cfg.resume is True and cfg.offline_fraction == 0.1
    assert cfg.layer_norm is False
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["finetune", "--critic-hidden-dims", "64,x"])


def test_cli_reports_config_errors_without_traceback(capsys):
    assert cli.main(["finetune", "--method", "wsrll"]) == 2
    assert "Did you mean 'wsrl'" in capsys.readouterr().err


def test_tasks_command_lists_tasks_and_how_to_get_data(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WSRL_DATA_DIR", str(tmp_path))
    assert cli.main(["tasks", "--family", "pointmaze", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "pointmaze-umaze-v0" in out and "dataset: no" in out
    assert "wsrl datagen --task pointmaze-umaze-v0 --recipe maze-planner" in out


def test_unknown_task_on_the_command_line(capsys):
    assert cli.main(["pretrain", "--task", "hoper-medium-v2"]) == 2
    assert "Did you mean 'hopper-medium-v2'" in capsys.readouterr().err


def test_last_hidden_layer_init_scale_is_the_familys_unless_given():
    for family, scale in (("antmaze", 1e-2), ("adroit", 1e-2), ("locomotion", 1e-2), ("kitchen", None)):
        assert C.learner_config_for_pretrain(C.PretrainConfig(), C.PRESETS[family]).final_init_scale == scale
        assert resolve(family, method="sac-fast").learner.final_init_scale == scale
    assert resolve(method="sac-fast", final_init_scale=1.5).learner.final_init_scale == 1.5
    with pytest.raises(C.ConfigError, match="final_init_scale=0.0 must be > 0"):
        resolve(method="sac-fast", final_init_scale=0.0)


def test_cli_trains_a_group_of_seeds_and_names_each_run(tmp_path, maze_dataset, capsys):
    """`--seeds` on the command line: pre-training and fine-tuning finish and print every seed's run directory."""
    tiny = ["--critic-hidden-dims", "8,8", "--actor-hidden-dims", "8,8", "--num-critics", "2", "--batch-size", "16",
            "--eval-episodes", "1", "--progress", "false", "--seeds", "0,1"]
    assert cli.main(["pretrain", "--task", "pointmaze-umaze-v0", "--dataset", maze_dataset, "--steps", "4",
                     "--eval-interval", "4", "--run-dir", str(tmp_path / "pre"), *tiny]) == 0
    assert cli.main(["finetune", "--task", "pointmaze-umaze-v0", "--method", "wsrl", "--checkpoint",
                     str(tmp_path / "pre" / "seed{seed}" / "checkpoint"), "--steps", "6", "--warmup-steps", "3",
                     "--update-after", "3", "--utd", "1", "--eval-interval", "6", "--diagnostic-samples", "0",
                     "--run-dir", str(tmp_path / "ft"), *tiny]) == 0
    out = capsys.readouterr().out
    for seed in (0, 1):
        assert f"pre-training done: {tmp_path / 'pre' / f'seed{seed}'} " in out
        assert f"fine-tuning done: {tmp_path / 'ft' / f'seed{seed}'}" in out
