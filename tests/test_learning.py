"""Learning check on a small task (the demo's settings on seed 0, without the Cal-QL fine-tuning baseline): Cal-QL
pre-training learns the task from the generated data, WSRL fine-tuning without the offline data ends at least at
its pre-trained score (it did on seeds 0, 1 and 2, docs/results.md), and fine-tuning without the warmup lets the
Q-values on the (discarded) offline data fall further at the start of fine-tuning than WSRL with its warmup does.
About 4 minutes on 2 CPU cores."""

import pytest

from wsrl.demo import DemoSettings, run_demo, summarize_run


@pytest.mark.slow
def test_pretraining_learns_and_warmup_prevents_the_q_collapse(tmp_path):
    result = run_demo(tmp_path, DemoSettings(seeds=(0,)), progress=False, variants=("wsrl", "wsrl-no-warmup"))
    wsrl = summarize_run(result["runs"]["wsrl"][0])
    no_warmup = summarize_run(result["runs"]["wsrl-no-warmup"][0])
    assert wsrl["pretrained"] >= 50, "Cal-QL pre-training did not learn the task"
    assert wsrl["final"] >= wsrl["pretrained"], "WSRL fell below its pre-trained policy"
    assert no_warmup["q_offline_min_early"] < wsrl["q_offline_min_early"]
    assert wsrl["q_offline_min_early"] == pytest.approx(wsrl["q_offline_start"])  # the learner is frozen in its warmup
