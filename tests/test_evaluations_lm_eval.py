import json

import numpy as np
import pytest

from collapsebench.errors import UserError
from collapsebench.evaluations.lm_eval import choice_loglikelihoods, flatten_results, samples_calibration
from evalhelpers import eval_ctx, tiny_causal_lm

FACTS = ["the sky is blue .", "grass is green .", "snow is white .", "coal is black ."]
ROWS = [{"q": "the sky is", "choices": ["blue", "green", "white", "black"], "label": 0},
        {"q": "grass is", "choices": ["blue", "green", "white", "black"], "label": 1},
        {"q": "snow is", "choices": ["blue", "green", "white", "black"], "label": 2},
        {"q": "coal is", "choices": ["blue", "green", "white", "black"], "label": 3}]


def test_flatten_results_keeps_numbers_and_names_filters():
    flat = flatten_results({"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": "N/A",
                                  "exact_match,strict": 1, "sample_len": 4}})
    assert flat == {"lm_eval/t/acc": 0.5, "lm_eval/t/exact_match/strict": 1.0, "lm_eval/t/sample_len": 4.0}


def test_choice_loglikelihoods_from_logged_samples():
    s = {"arguments": [("q", " a"), ("q", " b")], "filtered_resps": [(-1.0, False), (-3.0, True)], "target": 1}
    assert choice_loglikelihoods(s) == ([-1.0, -3.0], 1)
    s_str = {"arguments": [("q", " a"), ("q", " b")], "resps": [[(-1.0, False)], [(-3.0, True)]], "target": "a"}
    assert choice_loglikelihoods(s_str) == ([-1.0, -3.0], 0)
    assert choice_loglikelihoods({"arguments": [("q", "")], "filtered_resps": ["text"], "target": "x"}) is None
    cal = samples_calibration([s, s_str])
    p = 1 / (1 + np.exp(-2.0))
    assert cal["confidence"] == pytest.approx(p)
    assert cal["overconfidence"] == pytest.approx(p - 0.5)
    assert samples_calibration([{"arguments": [("q", "")], "filtered_resps": ["generated"]}]) is None


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "colors.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS))
    (tasks / "colors.yaml").write_text(
        "task: tiny_colors\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n  data_files:\n    test: colors.jsonl\n".replace("colors.jsonl", str(tasks / "colors.jsonl"))
        + "test_split: test\nfewshot_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    return root


def test_lm_eval_on_local_task(tmp_path, tiny_task):
    pytest.importorskip("lm_eval")
    from collapsebench.evaluations.lm_eval import lm_eval

    ctx = eval_ctx(tmp_path, iteration=1)
    tiny_causal_lm(ctx.phase_dir(1, "train") / "model", FACTS, train_steps=150)
    m = lm_eval(ctx, ["tiny_colors"], num_fewshot=0, batch_size=4, include_path=str(tiny_task / "tasks"),
                bootstrap_iters=0, include_defaults=False)
    acc = m["lm_eval/tiny_colors/acc"]
    assert acc >= 0.75  # trained on the facts: far above the 1-in-4 chance
    assert m["lm_eval/tiny_colors/calibration_items"] == 4.0
    assert 0.0 <= m["lm_eval/tiny_colors/ece"] <= 1.0
    assert m["lm_eval/tiny_colors/ece_alert_level"] == 0.0
    samples = [json.loads(line) for line in (ctx.out_dir / "lm_eval_samples_tiny_colors.jsonl").open()]
    assert len(samples) == 4
    # our argmax over the logged log-likelihoods agrees with lm-eval's own accuracy
    parsed = [choice_loglikelihoods(s) for s in samples]
    assert np.mean([int(np.argmax(ll)) == t for ll, t in parsed]) == pytest.approx(acc)
    assert m["lm_eval/tiny_colors/overconfidence"] == pytest.approx(m["lm_eval/tiny_colors/confidence"] - acc)
    assert json.loads((ctx.out_dir / "lm_eval_results.json").read_text())["results"]["tiny_colors"]
    with pytest.raises(UserError, match="unknown task"):
        lm_eval(ctx, ["no_such_task_xyz"], include_path=str(tiny_task / "tasks"), include_defaults=False)
