import json

import numpy as np
import pytest

from collapsebench.errors import UserError
from collapsebench.evaluations.lm_eval import (
    answer_confidence,
    choice_loglikelihoods,
    flatten_results,
    generative_answer,
    samples_calibration,
)
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


def test_generative_answer_is_scored_where_the_model_gave_it():
    """The extracted answer's tokens are scored after the prompt and the generated text before the
    answer's last occurrence (the final answer, not a number of the working); the space before it
    goes with it, as the model generated it."""
    gen = {"until": ["\n"]}
    sample = {"arguments": [("Q: 3+5?\nA:", gen)], "resps": [[" 3 + 5 = 8. #### 8"]], "filtered_resps": ["8"],
              "filter": "strict-match", "exact_match": 1.0}
    assert generative_answer(sample) == ("Q: 3+5?\nA: 3 + 5 = 8. ####", " 8", True)
    invalid = {**sample, "filtered_resps": ["[invalid]"], "exact_match": 0.0}
    assert generative_answer(invalid) == ("Q: 3+5?\nA:", "", False)  # no answer in the text: unscored
    assert generative_answer({**sample, "exact_match": 0.4}) is None  # not a 0/1 correctness
    mc = {"arguments": [("q", " a"), ("q", " b")], "filtered_resps": [(-1.0, False), (-3.0, True)], "target": 1}
    assert generative_answer(mc) is None
    # product of the tokens' probabilities (P(y|x)) or their geometric mean, by hand
    sums, counts = np.log([0.5 * 0.2, 0.9]), np.array([2, 1])
    assert answer_confidence(sums, counts) == pytest.approx([0.1, 0.9])
    assert answer_confidence(sums, counts, "geometric_mean") == pytest.approx([0.1 ** 0.5, 0.9])


GEN_ROWS = [{"q": "the sky is", "a": "blue"}, {"q": "grass is", "a": "green"}, {"q": "snow is", "a": "white"},
            {"q": "coal is", "a": "black"}, {"q": "the snow is", "a": "white"}, {"q": "the grass is", "a": "green"}]


def test_lm_eval_calibration_of_a_local_generative_task(tmp_path, tiny_task):
    """ECE on a generate_until task (004's ECE series is on GSM8K, a generative task): before, only
    multiple-choice samples gave an ECE; now each answer's probability under the model is its
    confidence and exact_match its correctness, per filter."""
    pytest.importorskip("lm_eval")
    from collapsebench.evaluations.calibration import expected_calibration_error
    from collapsebench.evaluations.lm_eval import lm_eval
    from collapsebench.models.loading import load_causal_lm
    from collapsebench.models.scoring import continuation_logprobs

    tasks = tiny_task / "tasks"
    (tasks / "gen.jsonl").write_text("\n".join(json.dumps(r) for r in GEN_ROWS))
    (tasks / "gen.yaml").write_text(
        f"task: tiny_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / 'gen.jsonl'}\n"
        "test_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
        "generation_kwargs:\n  until: [\".\"]\n  do_sample: false\n  max_gen_toks: 3\n"
        "filter_list:\n  - name: first_word\n    filter:\n"
        "      - {function: regex, regex_pattern: \"(\\\\w+)\"}\n      - {function: take_first}\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    ctx = eval_ctx(tmp_path, iteration=1)
    model = tiny_causal_lm(ctx.phase_dir(1, "train") / "model", FACTS, train_steps=60)
    m = lm_eval(ctx, ["tiny_gen"], batch_size=4, include_path=str(tasks), bootstrap_iters=0, include_defaults=False)
    key = "lm_eval/tiny_gen/{}/first_word"
    assert m[key.format("calibration_items")] + m[key.format("calibration_unscored")] == len(GEN_ROWS)
    samples = [json.loads(line) for line in (ctx.out_dir / "lm_eval_samples_tiny_gen.jsonl").open()]
    parsed = [generative_answer(s) for s in samples]
    scored = [p for p in parsed if p is not None and p[1]]
    assert len(scored) == m[key.format("calibration_items")] >= 4
    lm, tok = load_causal_lm(model)  # each answer's probability, computed again here
    conf = np.exp(continuation_logprobs(lm, tok, [c for c, _, _ in scored], [a for _, a, _ in scored]))
    correct = np.array([ok for _, _, ok in scored])
    assert 0 < conf.min() and conf.max() < 1
    assert m[key.format("confidence")] == pytest.approx(conf.mean())
    assert m[key.format("overconfidence")] == pytest.approx(conf.mean() - correct.mean())
    assert m[key.format("ece")] == pytest.approx(expected_calibration_error(conf, correct))
    assert m[key.format("ece") + "_alert_level"] == 0.0  # <ece key>_alert_level
    # correctness is lm-eval's own exact_match, sample by sample
    assert np.mean([ok for _, _, ok in parsed]) == pytest.approx(m["lm_eval/tiny_gen/exact_match/first_word"])
