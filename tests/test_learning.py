"""Learning check on a small task (the demo's settings on seed 0, without the Cal-QL fine-tuning baseline): Cal-QL
pre-training learns the task from the generated data, WSRL fine-tuning without the offline data ends at least at
its pre-trained score (it did on seeds 0, 1 and 2, docs/results.md), and fine-tuning without the warmup lets the
Q-values on the (discarded) offline data fall further at the start of fine-tuning than WSRL with its warmup does.
About 4 minutes on 2 CPU cores."""

import dataclasses

import pytest

from wsrl.demo import DemoSettings, run_demo, summarize_run


@pytest.mark.slow
def test_pretraining_learns_and_warmup_prevents_the_q_collapse(tmp_path):
    settings = DemoSettings(seeds=(0,))
    wsrl_dir = run_demo(tmp_path, settings, progress=False, variants=("wsrl",))["runs"]["wsrl"][0]
    # "The start of fine-tuning" is the demo's first quarter (summarize_run's window): the run without warmup only
    # needs those steps; it starts from the same pre-trained checkpoint.
    early = dataclasses.replace(settings, finetune_steps=settings.finetune_steps // 4)
    no_warmup_dir = run_demo(tmp_path, early, progress=False, variants=("wsrl-no-warmup",))["runs"]["wsrl-no-warmup"][0]
    wsrl, no_warmup = summarize_run(wsrl_dir), summarize_run(no_warmup_dir, window=1.0)
    assert wsrl["pretrained"] >= 50, "Cal-QL pre-training did not learn the task"
    assert wsrl["final"] >= wsrl["pretrained"], "WSRL fell below its pre-trained policy"
    assert no_warmup["q_offline_min_early"] < wsrl["q_offline_min_early"]
    assert wsrl["q_offline_min_early"] == pytest.approx(wsrl["q_offline_start"])  # the learner is frozen in its warmup
