"""Recipes cpt-mixing-ratio, olmo-self-training and truncated-loss: the paper configs validate
without network (hub names reported as ``needs download``), and each CPU twin (``slow``) runs end
to end as a sweep, shows the published direction on the seeds fixed in its config, and
reproduces its recorded headline numbers (``tests/golden/recipes_b.json``; re-record with
``COLLAPSEBENCH_RECORD_GOLDEN=1``, like ``test_golden.py``). The twins need WikiText-2 in
``../shared/data`` and are skipped without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from collapsebench.cli import main
from conftest import REPO, SHARED_DATA, declared_claims, golden_entry

RECIPES = REPO / "recipes"
GOLDEN = Path(__file__).parent / "golden" / "recipes_b.json"
RELATIVE = 0.02  # cells run two at a time in their own processes; the slack absorbs thread-order rounding
WIKITEXT = SHARED_DATA / "wikitext-2" / "valid.txt"

# The backends' argument objects (a child process each, seconds) are built for one paper config only.
PAPERS = [
    ("cpt-mixing-ratio/paper.yaml", [], ["HuggingFaceTB/finemath", "meta-llama/Llama-3.2-3B"]),
    ("cpt-mixing-ratio/paper_filter.yaml", ["--no-backend"],
     ["HuggingFaceTB/finemath", "meta-llama/Llama-3.2-3B", "HuggingFaceTB/finemath-classifier"]),
    ("cpt-mixing-ratio/paper.yaml", ["--no-backend", "name=cpt_base_model", "iterations=1",  # alpha = 100%'s baseline
                                     "train.trainer.untrained_iterations=1", "generate.num_samples=1"],
     ["HuggingFaceTB/finemath", "meta-llama/Llama-3.2-3B"]),
    ("olmo-self-training/paper.yaml", ["--no-backend"], ["allenai/olmo-mix-1124", "allenai/OLMo-2-1124-7B"]),
    ("olmo-self-training/paper.yaml", ["--no-backend", "model.base=allenai/OLMo-2-1124-13B"],
     ["allenai/OLMo-2-1124-13B"]),
    ("olmo-self-training/paper_tiers.yaml", ["--no-backend"], ["allenai/olmo-mix-1124", "allenai/OLMo-2-1124-7B"]),
    ("truncated-loss/paper.yaml", ["--no-backend"], ["Salesforce/wikitext", "meta-llama/Llama-3.2-1B"]),
    ("truncated-loss/paper.yaml", ["--no-backend", "model.base=google/gemma-3-1b-pt"], ["google/gemma-3-1b-pt"]),
]


@pytest.mark.parametrize(("path", "extra", "names"), PAPERS, ids=[f"{p}{' '.join(e)}" for p, e, _ in PAPERS])
def test_paper_config_validates_offline(path, extra, names, capfd, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    options = [e for e in extra if e.startswith("--")]
    overrides = [e for e in extra if not e.startswith("--")]
    capfd.readouterr()
    code = main(["validate", str(RECIPES / path), *overrides, *options])
    out = capfd.readouterr()
    text = out.out + out.err
    assert code == 0, text
    for name in names:
        assert f"needs download: {name}" in text, text


def test_the_paper_configs_name_the_published_prompts_and_the_base_model_baseline():
    """CPT's judge reads the FineMath annotation prompt at its pinned commit; the base model's
    evaluation (alpha = 100%'s clean baseline) is the command in paper.yaml's header; the OLMo
    judge is 001 App. B's prompt with bracket verdicts, round 0 the untouched base."""
    audit = yaml.safe_load((RECIPES / "cpt-mixing-ratio/paper_filter.yaml").read_text())["evaluate"]["evaluations"]
    judge = next(e for e in audit if isinstance(e, dict) and e["name"] == "judge_quality")
    assert judge["template_file"] == ("hf://datasets/HuggingFaceTB/finemath@690f4f6492025b6db16fede35fc4701fc93cb1fe"
                                      "/assets/prompt.txt")
    assert "train.trainer.untrained_iterations=1" in (RECIPES / "cpt-mixing-ratio/paper.yaml").read_text().splitlines()[3]
    olmo = yaml.safe_load((RECIPES / "olmo-self-training/paper.yaml").read_text())
    pairwise = next(e for e in olmo["evaluate"]["evaluations"] if isinstance(e, dict) and e["name"] == "judge_pairwise")
    assert pairwise["verdict_format"] == "brackets" and pairwise["template_file"] == "judge_prompt.txt"
    assert olmo["train"]["trainer"]["untrained_iterations"] == 1 and "first_from" not in olmo["generate"]
    tce = yaml.safe_load((RECIPES / "truncated-loss/paper.yaml").read_text())
    assert tce["train"]["trainer"]["best_by_holdout"] is True  # 003 §4.1.3: "best performing checkpoints"
    assert tce["data"]["evaluation"]["split"] == "validation" and tce["generate"]["generator"]["sampling"]["temperature"] == 0


def test_paper_sweeps_name_the_published_grids():
    """The grids are the papers': every alpha, every K and both models, every loss."""
    cpt = yaml.safe_load((RECIPES / "cpt-mixing-ratio/paper.yaml").read_text())["sweep"]
    assert cpt["grid"]["curate.regime.alpha"] == [0.1, 0.2, 0.5, 0.75, 1.0] and cpt["baselines"] == "clean"
    olmo = yaml.safe_load((RECIPES / "olmo-self-training/paper.yaml").read_text())["sweep"]
    assert [p.get("tokens", 0) for p in olmo["grid"]["generate.prompts"]] == [0, 3, 64]
    tce = yaml.safe_load((RECIPES / "truncated-loss/paper.yaml").read_text())["sweep"]
    assert [(x["name"], x.get("gamma")) for x in tce["grid"]["train.trainer.loss"]] == [
        ("cross_entropy", None), ("truncated_cross_entropy", 0.9), ("truncated_cross_entropy", 0.99), ("focal", 2.0)]


def test_classifier_score_audits_samples_and_real_text_with_the_validators_scores(tmp_path):
    """The audit scores what the classifier validator would: the raw output of a one-output
    regression head, the share at or above the threshold, for samples and real held-out text."""
    import numpy as np

    from collapsebench.evaluations.classifier_audit import classifier_score
    from collapsebench.validators.builtin import classifier
    from evalhelpers import eval_ctx, save_real, save_samples, tiny_regression_classifier

    texts = [f"the {c} cat sat on mat number {i}" for i, c in enumerate(["red", "big", "old", "shy"] * 5)]
    tiny_regression_classifier(tmp_path, texts)
    ctx = eval_ctx(tmp_path, iteration=1)
    save_samples(ctx, 1, texts[:12])
    save_real(ctx, texts[12:], split="holdout")
    raw = [v.score for v in classifier(ctx, {"text": texts[:12]}, model="clf", threshold=0.0)]
    cut = float(np.median(raw))
    m = classifier_score(ctx, model="clf", threshold=cut, n_samples=100, on="accepted")  # samples/ alone
    assert m["classifier_n_accepted"] == 12 and m["real_classifier_n"] == 8
    assert m["classifier_mean_accepted"] == pytest.approx(float(np.mean(raw)), abs=1e-5)
    assert m["classifier_pass_rate_accepted"] == pytest.approx(float(np.mean(np.array(raw) >= cut)))
    lines = (ctx.out_dir / "classifier_scores.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[-1])["source"] == "real"
    with pytest.raises(Exception, match="threshold"):
        classifier_score(ctx, model="clf", on="accepted")  # a regression head has no default threshold


# ------------------------------------------------------------------------------------ the twins


def run_sweep(config: Path, tmp_path: Path, monkeypatch: Any) -> Path:
    """Run a twin's sweep under tmp_path; its sweep folder."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(config), "--name", "twin"]) == 0
    return tmp_path / "runs" / "twin"


def read_sweep(sweep: Path) -> dict[tuple[str, int], dict[int, dict[str, Any]]]:
    """{(arm, seed): {iteration: metrics}}, the arm named by the cell's values without the seed."""
    out = {}
    for cell in json.loads((sweep / "sweep.json").read_text())["cells"]:
        rows = [json.loads(line) for line in (sweep / cell["dir"] / "metrics.jsonl").read_text().splitlines()]
        out[(cell["label"], int(cell["seed"]))] = {int(r["iteration"]): r for r in rows}
    return out


def check_recorded(name: str, headline: dict[str, float]) -> None:
    want = golden_entry(GOLDEN, name, headline)
    if want is None:
        return
    assert sorted(headline) == sorted(want)
    for key, value in want.items():
        assert headline[key] == pytest.approx(value, rel=RELATIVE), key


def arm(results: dict[tuple[str, int], Any], seed: int, *words: str) -> dict[int, dict[str, float]]:
    """The cell of ``seed`` whose label starts with the first of ``words`` and holds the others."""
    found = [v for (label, s), v in results.items()
             if s == seed and label.split()[0] == words[0] and all(w in label for w in words[1:])]
    assert len(found) == 1, (words, [label for label, _ in results])
    return found[0]


def take(headline: dict[str, float], prefix: str, rows: dict[int, dict[str, Any]], **picks: tuple[int, str]) -> None:
    """headline[prefix/name] = rows[iteration][metric] for each name = (iteration, metric)."""
    for name, (iteration, metric) in picks.items():
        headline[f"{prefix}/{name}"] = rows[iteration][metric]


twin = pytest.mark.skipif(not WIKITEXT.exists(), reason="needs ../shared/data/wikitext-2")


def truncated_loss_headline(sweep: Path) -> dict[str, float]:
    """CE vs TCE(0.9) through 3 fresh_real stages, seeds 0-4, and the claims cpu.yaml declares,
    judged by ``compare`` (``report/contrasts.json``). What must hold whatever the verdicts: the
    stage-1 model knows its first part (KR accuracy on part 0 well above the other parts'), TCE
    masks tokens and CE does not, the failure rule was evaluated, and every claim gets a verdict
    with its declared direction. The verdicts themselves are the README's (compared here)."""
    results = read_sweep(sweep)
    headline: dict[str, float] = {}
    for seed in range(5):
        for name, words in (("ce", ("cross_entropy",)), ("tce", ("truncated_cross_entropy",))):
            rows = arm(results, seed, *words)
            assert max(rows) == 3 and rows[3]["knowledge_items"] >= 200
            first = rows[1]
            others = [first[f"knowledge_accuracy/part{p}"] for p in (1, 2)]
            assert first["knowledge_accuracy_first_slice"] > max(others) + 0.15, (name, seed)
            masked = [r.get("train/tce_masked_fraction") for r in rows.values()]
            assert all(0 < m < 1 for m in masked) if name == "tce" else all(m is None for m in masked)
            take(headline, f"{name}/seed{seed}", rows, first_slice_stage1=(1, "knowledge_accuracy_first_slice"),
                 first_slice_last=(3, "knowledge_accuracy_first_slice"), kr_total_last=(3, "knowledge_accuracy"),
                 holdout_perplexity_last=(3, "holdout_perplexity"))
    cells = json.loads((sweep / "sweep.json").read_text())["cells"]
    assert all(json.loads((sweep / c["dir"] / "state.json").read_text())["failure"]["time_to_failure"] for c in cells)
    claims = declared_claims(sweep)
    assert claims.keys() == set(TCE_VERDICTS)
    for name, claim in claims.items():
        assert claim["n_pairs"] == 5 and claim["verdict"] == TCE_VERDICTS[name], (name, claim["verdict"], claim["why"])
        headline[f"{name}/effect"] = claim["effect"]
    return headline


# compare's verdicts on the recorded sweep (recipes/truncated-loss/README.md): the stage-1 models of
# seeds 2 and 3 know 0.77-0.80 of their part-0 facts, below the declared 0.8 (facts_learned)
TCE_VERDICTS = {"tce_retains_first_split": "not testable", "tce_higher_kr_total": "not testable",
                "ce_forgets_first_split": "not testable"}


@pytest.mark.slow
@twin
def test_truncated_loss_twin(tmp_path, monkeypatch):
    sweep = run_sweep(RECIPES / "truncated-loss" / "cpu.yaml", tmp_path, monkeypatch)
    check_recorded("truncated-loss", truncated_loss_headline(sweep))


def cpt_headline(sweep: Path) -> dict[str, float]:
    """CPT from the base at every iteration, on a domain the base never read, seeds 0-4. What must
    hold whatever the verdicts: continued pretraining learns the domain (iteration 1 far below the
    base's 233.5), the arms mix what they declare (about 20 % / 75 % synthetic tokens, none for the
    clean baseline), the rater filter rejects samples and what it keeps rates higher than the
    unfiltered arm's. compare's verdicts on the declared claims are the README's."""
    results = read_sweep(sweep)
    headline: dict[str, float] = {}
    for seed in range(5):
        arms = {"0.2": arm(results, seed, "replace", "alpha=0.2"),
                "0.75": arm(results, seed, "replace", "alpha=0.75", "validators=[]"),
                "clean": arm(results, seed, "clean_fraction", "alpha=0.75"),
                "filter": arm(results, seed, "replace", "alpha=0.75", "classifier")}
        assert arms["0.2"][1]["holdout_perplexity"] < 20, seed  # the base: 233.5
        for name, share in (("0.2", 0.2), ("0.75", 0.75), ("clean", 0.0), ("filter", 0.75)):
            assert arms[name][3]["curate/synthetic_fraction_tokens"] == pytest.approx(share, abs=0.02), (name, seed)
        filtered, high = arms["filter"], arms["0.75"]
        assert 0 < filtered[3]["generate/acceptance"] < 1 and high[3]["generate/acceptance"] == 1
        assert filtered[3]["classifier_mean_accepted"] > high[3]["classifier_mean_accepted"] + 0.3, seed
        for name, rows in arms.items():
            take(headline, f"{name}/seed{seed}", rows, holdout_perplexity_it3=(3, "holdout_perplexity"),
                 kl_truth_model_it3=(3, "lang_kl_truth_model_per_word"),
                 rater_mean_it3=(3, "classifier_mean_accepted"))
    claims = declared_claims(sweep)
    assert {name: claim["verdict"] for name, claim in claims.items()} == CPT_VERDICTS
    headline.update({f"{name}/effect": claim["effect"] for name, claim in claims.items()})
    return headline


# compare's verdicts on the recorded sweep (recipes/cpt-mixing-ratio/README.md)
CPT_VERDICTS = {"degradation_at_high_ratio": "reproduced", "twenty_percent_minimal": "equivalent",
                "early_gain_over_clean_baseline": "reproduced", "filter_dampens_later": "inconclusive",
                "filter_does_not_prevent": "reproduced"}


@pytest.mark.slow
@twin
def test_cpt_mixing_ratio_twin(tmp_path, monkeypatch):
    sweep = run_sweep(RECIPES / "cpt-mixing-ratio" / "cpu.yaml", tmp_path, monkeypatch)
    check_recorded("cpt-mixing-ratio", cpt_headline(sweep))


def olmo_headline(sweep: Path, tiers: Path) -> dict[str, float]:
    """Self-training on 100% own text: round 0 (iteration 1) is the base itself, then 3 rounds.
    The published direction: held-out perplexity rises round after round for K = 0 and K = 16, and
    compare's verdicts on the declared claims say so over the 3 seeds. The tier variant: one round
    on one tier of three times the tokens; neither tier beats the base (round 0)."""
    results, tier_results = read_sweep(sweep), read_sweep(tiers)
    headline: dict[str, float] = {}
    for seed in (0, 1, 2):
        for name, words in (("K0", ("unconditional",)), ("K16", ("real_prefix",))):
            rows = arm(results, seed, *words)
            ppl = [rows[k]["holdout_perplexity"] for k in sorted(rows)]
            assert len(ppl) == 4 and ppl[3] > ppl[2] > ppl[1] > ppl[0], (name, seed, ppl)
            take(headline, f"{name}/seed{seed}", rows, holdout_perplexity_it1=(1, "holdout_perplexity"),
                 holdout_perplexity_it4=(4, "holdout_perplexity"), samples_it4=(4, "generate/samples"))
        tier_rows = {tier: arm(tier_results, seed, f'validators=[{{"name":"perplexity_tier","tier":"{tier}"}}]')
                     for tier in ("low", "high")}
        for tier, rows in tier_rows.items():
            assert rows[2]["holdout_perplexity"] > rows[1]["holdout_perplexity"], (tier, seed)
            take(headline, f"tier_{tier}/seed{seed}", rows, holdout_perplexity_it2=(2, "holdout_perplexity"),
                 samples_it2=(2, "generate/samples"))
    for folder, claims in ((sweep, ("k0_perplexity_rises", "prefix_perplexity_rises")), (tiers, ())):
        verdicts = {name: claim["verdict"] for name, claim in declared_claims(folder).items()}
        assert all(verdicts[c] == "reproduced" for c in claims), verdicts
        headline.update({f"verdict/{c}": float(v == "reproduced") for c, v in verdicts.items()})
    return headline


@pytest.mark.slow
@twin
def test_olmo_self_training_twin(tmp_path, monkeypatch):
    sweep = run_sweep(RECIPES / "olmo-self-training" / "cpu.yaml", tmp_path, monkeypatch)
    tiers = run_sweep(RECIPES / "olmo-self-training" / "cpu_tiers.yaml", tmp_path / "tiers", monkeypatch)
    check_recorded("olmo-self-training", olmo_headline(sweep, tiers))


def test_untrained_iterations_keep_the_base_model_for_round_zero(tmp_path):
    """``causal_lm``'s ``untrained_iterations`` (the OLMo study's round 0, CPT's 100% clean
    baseline): iteration 1's model is the base itself, evaluated and generating S(1); iteration 2
    continues from it on S(1)."""
    import torch
    from safetensors.torch import load_file

    from collapsebench.config import config_from_dict
    from collapsebench.loop import run_experiment
    from conftest import tiny_config

    (tmp_path / "base").mkdir()
    base_run = tiny_config(tmp_path / "base", iterations=1, evaluate={"evaluations": []})
    base_run["generate"]["num_samples"] = 8
    run_experiment(config_from_dict(base_run), quiet=True)
    base = tmp_path / "base" / "run" / "iter_001" / "train" / "model"
    raw = tiny_config(tmp_path, iterations=2, model={"init": "previous", "base": str(base)},
                      curate={"regime": {"name": "replace", "alpha": 1.0}})
    raw["train"]["trainer"]["untrained_iterations"] = 1
    raw["generate"]["num_samples"] = 200
    raw["evaluate"] = {"evaluations": ["perplexity"]}
    run_experiment(config_from_dict(raw), quiet=True)
    run = tmp_path / "run"
    weights = load_file(base / "model.safetensors")
    kept = load_file(run / "iter_001" / "train" / "model" / "model.safetensors")
    trained = load_file(run / "iter_002" / "train" / "model" / "model.safetensors")
    assert all(torch.equal(weights[k], kept[k]) for k in weights)
    assert not all(torch.equal(weights[k], trained[k]) for k in weights)
    stats = json.loads((run / "iter_001" / "train" / "stats.json").read_text())
    assert stats["untrained"] is True and stats["steps"] == 0
    assert json.loads((run / "iter_002" / "train" / "stats.json").read_text())["steps"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["iteration"] for row in rows] == [1, 2] and rows[0]["holdout_perplexity"] > 0
