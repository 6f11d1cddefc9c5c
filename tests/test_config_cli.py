"""Configuration resolution, bad values and the command-line help."""

import pytest

from wsrl import cli
from wsrl import config as C


def resolve(**kw):
    return C.resolve_finetune(C.FinetuneConfig(**kw), C.PRESETS["antmaze"])


def test_wsrl_defaults_are_the_papers():
    r = resolve(method="wsrl", checkpoint="ckpt")
    assert (r.init, r.warmup_steps, r.warmup_source, r.offline_fraction, r.utd) == ("both", 5000, "policy", 0.0, 4)
    assert r.learner.num_critics == 10 and r.learner.critic_subsample == 2
    assert r.learner.critic_layer_norm and r.learner.actor_layer_norm
    assert r.learner.backup == "max_over_actions"  # antmaze; min of 2 elsewhere
    assert C.resolve_finetune(C.FinetuneConfig(method="wsrl", checkpoint="c"), C.PRESETS["kitchen"]).learner.backup \
        == "min"


def test_baselines_resolve_to_their_definitions():
    rlpd = resolve(method="rlpd")
    assert rlpd.init == "none" and rlpd.offline_fraction == 0.5 and rlpd.learner.critic_subsample == 1
    so2 = resolve(method="so2", checkpoint="c")
    assert so2.learner.target_noise_std == pytest.approx(0.3 ** 0.5) and so2.learner.target_noise_clip == 0.6
    assert resolve(method="jsrl", checkpoint="c").method.jsrl
    assert resolve(method="calql-ft", checkpoint="c").learner is None  # continues the checkpoint's learner
    kitchen = C.resolve_finetune(C.FinetuneConfig(method="calql-ft", checkpoint="c", offline_fraction=None),
                                 C.PRESETS["kitchen"])
    assert kitchen.offline_fraction == 0.0


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
