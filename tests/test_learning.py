"""Learning check on a small task (the demo's settings, without the Cal-QL fine-tuning baseline): a Cal-QL
pre-trained agent fine-tuned with WSRL and no offline data ends above its pre-trained score, and without the
warmup its Q-values on the (discarded) offline data fall further at the start of fine-tuning. About 4 minutes
on 2 CPU cores; the numbers observed are in docs/results.md."""

import pytest

from wsrl.demo import DemoSettings, run_demo, summarize_run


@pytest.mark.slow
def test_wsrl_fine_tunes_without_data_and_warmup_prevents_the_q_collapse(tmp_path):
    result = run_demo(tmp_path, DemoSettings(), progress=False, variants=("wsrl", "wsrl-no-warmup"))
    wsrl = summarize_run(result["runs"]["wsrl"])
    no_warmup = summarize_run(result["runs"]["wsrl-no-warmup"])
    assert wsrl["pretrained"] > 0, "pre-training did not learn the task"
    assert wsrl["final"] > wsrl["pretrained"]
    assert no_warmup["q_offline_min_early"] < wsrl["q_offline_min_early"]
    assert wsrl["final"] > no_warmup["final"]
