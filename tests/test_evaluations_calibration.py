import math

import numpy as np
import pytest

from collapsebench.evaluations.calibration import (
    add_ece_alert,
    calibration_metrics,
    choice_probabilities,
    ece_alert,
    expected_calibration_error,
)
from evalhelpers import eval_ctx, write_metrics


def test_perfectly_calibrated_ece_near_zero():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.0, 1.0, 50_000)
    correct = rng.uniform(size=conf.size) < conf  # right exactly as often as claimed
    assert expected_calibration_error(conf, correct) < 0.015


def test_overconfident_ece_large_and_gap_positive():
    rng = np.random.default_rng(1)
    n = 5000
    # two choices, the model puts 0.95 on its pick, which is right half of the time
    logits = np.log(np.stack([np.full(n, 0.95), np.full(n, 0.05)], axis=1))
    answers = (rng.uniform(size=n) < 0.5).astype(int)
    m = calibration_metrics(choice_probabilities(logits), answers)
    assert m["confidence"] == pytest.approx(0.95)
    assert abs(m["accuracy"] - 0.5) < 0.03
    assert m["ece"] == pytest.approx(0.95 - m["accuracy"], abs=1e-9)
    assert m["ece"] > 0.4
    assert m["overconfidence"] > 0.4


def test_ece_bins_by_hand():
    # bin 9 holds conf 0.95 (2 items, 1 right) -> |0.5-0.95|; bin 2 holds 0.25 (2 items, 0 right) -> 0.25
    conf = np.array([0.95, 0.95, 0.25, 0.25])
    correct = np.array([1, 0, 0, 0])
    assert expected_calibration_error(conf, correct) == pytest.approx(0.5 * 0.45 + 0.5 * 0.25)
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == pytest.approx(0.0)


def test_ece_ten_equal_width_bins_by_hand_edges_included():
    """004's ECE: "ten equal-width bins based on confidence", sum_m |B_m|/N |acc(B_m) - conf(B_m)|.
    A confidence on an edge opens the upper bin ([0.1, 0.2) holds 0.1); 1.0 is in the last bin."""
    conf = np.array([0.05, 0.1, 0.15, 0.3, 0.7, 0.85, 0.9, 1.0])
    correct = np.array([0, 1, 0, 1, 1, 0, 1, 1])
    by_hand = (1 / 8 * abs(0 - 0.05)              # [0.0, 0.1): 0.05, wrong
               + 2 / 8 * abs(1 / 2 - 0.125)       # [0.1, 0.2): 0.1 right, 0.15 wrong
               + 1 / 8 * abs(1 - 0.3)             # [0.3, 0.4)
               + 1 / 8 * abs(1 - 0.7)             # [0.7, 0.8)
               + 1 / 8 * abs(0 - 0.85)            # [0.8, 0.9)
               + 2 / 8 * abs(1 - 0.95))           # [0.9, 1.0]: 0.9 and 1.0, both right
    assert by_hand == pytest.approx(2.75 / 8)
    assert expected_calibration_error(conf, correct) == pytest.approx(by_hand)
    assert expected_calibration_error(conf, correct, n_bins=1) == pytest.approx(abs(correct.mean() - conf.mean()))


def test_choice_probabilities_normalise_ragged_items():
    probs = choice_probabilities([[math.log(1), math.log(3)], [-1000.0, -1000.0, -1000.0]])
    assert probs[0] == pytest.approx([0.25, 0.75])
    assert probs[1] == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("series,level", [
    ([0.10], "ok"),
    ([0.10, 0.14], "ok"),
    ([0.10, 0.16], "warning"),
    ([0.10, 0.25, 0.19], "warning"),
    ([0.10, 0.21], "critical"),
    ([0.10, float("nan"), 0.12], "ok"),
    ([0.0, 0.01], "critical"),
])
def test_ece_alert(series, level):
    assert ece_alert(series) == level


def test_alert_level_reads_earlier_iterations(tmp_path):
    ctx = eval_ctx(tmp_path, iteration=3)
    write_metrics(ctx.run_dir, [
        {"iteration": 1, "knowledge_ece": 0.1},
        {"stage": "x"},
        {"iteration": 2, "knowledge_ece": 0.12},
        {"iteration": 3, "knowledge_ece": 0.01},  # a stale row of this iteration is not history
    ])
    assert add_ece_alert(ctx, {"knowledge_ece": 0.22}, "knowledge_ece")["knowledge_ece_alert_level"] == 2.0
    assert add_ece_alert(ctx, {"knowledge_ece": 0.16}, "knowledge_ece")["knowledge_ece_alert_level"] == 1.0
    first = eval_ctx(tmp_path / "other", iteration=1)
    assert add_ece_alert(first, {"knowledge_ece": 0.5}, "knowledge_ece")["knowledge_ece_alert_level"] == 0.0


def test_alert_history_falls_back_to_committed_evaluations(tmp_path):
    import json

    ctx = eval_ctx(tmp_path, iteration=3)
    write_metrics(ctx.run_dir, [{"iteration": 1, "calibration_ece": 0.1}])
    committed = ctx.phase_dir(2, "evaluate")
    committed.mkdir(parents=True)
    (committed / "metrics.json").write_text(json.dumps({"calibration_ece": None}))  # NaN stored as null
    m = add_ece_alert(ctx, {"calibration_ece": 0.17}, "calibration_ece")
    assert m["calibration_ece_alert_level"] == 1.0


def _baseline_run(path, seed, rows):
    write_metrics(path, rows)
    (path / "config.yaml").write_text(f"name: clean\nseed: {seed}\niterations: 3\n")


def test_alert_against_the_clean_baseline_run(tmp_path):
    """The published rule compares each iteration's ECE with the same iteration of the run of the
    same setting without synthetic data: a small rise over the run's own first iteration can be a
    large one over the clean baseline. Seeds are paired when the baseline holds several runs."""
    ctx = eval_ctx(tmp_path, iteration=2)
    write_metrics(ctx.run_dir, [{"iteration": 1, "calibration_ece": 0.17}])
    _baseline_run(tmp_path / "clean" / "seed0", 0, [{"iteration": 1, "calibration_ece": 0.10},
                                                    {"iteration": 2, "calibration_ece": 0.09}])
    _baseline_run(tmp_path / "clean" / "seed1", 1, [{"iteration": 2, "calibration_ece": 0.30}])
    m = add_ece_alert(ctx, {"calibration_ece": 0.20}, "calibration_ece", baseline=str(tmp_path / "clean"))
    assert m["calibration_ece_baseline"] == 0.09 and m["calibration_ece_rise"] == pytest.approx(0.20 / 0.09 - 1)
    assert m["calibration_ece_alert_level"] == 2.0  # +122% over the clean run (+18% over its own first iteration)
    relaxed = add_ece_alert(ctx, {"calibration_ece": 0.20}, "calibration_ece", baseline=str(tmp_path / "clean"),
                            warning=1.5, critical=3.0)
    assert relaxed["calibration_ece_alert_level"] == 0.0
    warned = add_ece_alert(ctx, {"calibration_ece": 0.15}, "calibration_ece", baseline=str(tmp_path / "clean" / "seed0"))
    assert warned["calibration_ece_alert_level"] == 1.0  # +67%
    later = eval_ctx(tmp_path, iteration=3)
    assert math.isnan(add_ece_alert(later, {"calibration_ece": 0.2}, "calibration_ece",
                                    baseline=str(tmp_path / "clean" / "seed0"))["calibration_ece_alert_level"])
