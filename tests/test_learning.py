"""Learning check on a small task (the demo's settings on seed 0, without the Cal-QL fine-tuning baseline): Cal-QL
pre-training learns the task from the generated data, and fine-tuning without the offline data and without the
warmup lets the Q-values on the (discarded) offline data fall further at the start of fine-tuning than WSRL with
its warmup does. Whether WSRL then ends above its pre-trained score is not asserted: at this budget it does not
on every seed (docs/results.md). About 4 minutes on 2 CPU cores."""

import pytest

from wsrl.demo import DemoSettings, run_demo, summarize_run


@pytest.mark.slow
def test_pretraining_learns_and_warmup_prevents_the_q_collapse(tmp_path):
    result = run_demo(tmp_path, DemoSettings(seeds=(0,)), progress=False, variants=("wsrl", "wsrl-no-warmup"))
    wsrl = summarize_run(result["runs"]["wsrl"][0])
    no_warmup = summarize_run(result["runs"]["wsrl-no-warmup"][0])
    assert wsrl["pretrained"] >= 50, "Cal-QL pre-training did not learn the task"
    assert no_warmup["q_offline_min_early"] < wsrl["q_offline_min_early"]
    assert wsrl["q_offline_min_early"] == pytest.approx(wsrl["q_offline_start"])  # the learner is frozen in its warmup
