"""The run's report page and the cards, on a run directory written by hand (so the content is known),
and the page in a real headless browser (slow)."""

import json
import re
import shutil

import pytest
import yaml

from collapsebench.analysis.report import write_report
from collapsebench.config import config_from_dict
from collapsebench.layout import RunLayout

TEXTS = {1: ["the cat sat", "a dog ran far", "red tree"], 2: ["the cat", "sat sat sat", "blue sky"]}
REJECTED = {1: [("zzz", "max_words", "too short")], 2: [("cat cat cat cat cat", "no_repeat", "repeats 'cat'"),
                                                       ("x", "max_words", "too short")]}


def stats(folder, value):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stats.json").write_text(json.dumps(value))


@pytest.fixture
def run_dir(tmp_path):
    import datasets

    root = tmp_path / "run"
    config = config_from_dict({"name": "handmade", "iterations": 2, "output_dir": str(root),
                               "generate": {"validators": [{"name": "jinja", "template": "{{ text | length > 3 }}"}]},
                               "evaluate": {"evaluations": ["perplexity", "qualitative"]}})
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(config.dump(), sort_keys=False))
    rows, steps = [], {}
    for k in (1, 2):
        it = root / f"iter_{k:03d}"
        stats(it / "curate", {"metrics": {"size": 3, "synthetic_fraction": 0.0 if k == 1 else 1.0},
                              "rows_by_generation": {"0": 3} if k == 1 else {str(k - 1): 3}})
        datasets.Dataset.from_dict({"text": TEXTS[k], "generation": [k - 1] * 3}).save_to_disk(str(it / "curate" / "dataset"))
        stats(it / "train", {"init": "previous", "init_from": None if k == 1 else f"iter_{k - 1:03d}/train/model",
                             "metrics": {"loss": 2.0 / k}})
        (it / "train" / "model").mkdir()
        gen = it / "generate"
        stats(gen, {"metrics": {"samples": 3, "acceptance": 3 / (3 + len(REJECTED[k]))}, "new_tokens": 30,
                    "validators": {"max_words": {"seen": 5, "kept": 4}}})
        datasets.Dataset.from_dict({"id": [f"g{k:03d}-{i:08d}" for i in range(3)], "origin": ["synthetic"] * 3,
                                    "generation": [k] * 3, "parent": [f"real-{i}" for i in range(3)],
                                    "prompt": ["<bos>"] * 3, "text": TEXTS[k]}).save_to_disk(str(gen / "samples"))
        rej = REJECTED[k]
        datasets.Dataset.from_dict({"id": [f"g{k:03d}-rejected-{i:08d}" for i in range(len(rej))],
                                    "generation": [k] * len(rej), "parent": ["real-9"] * len(rej),
                                    "prompt": ["<bos>"] * len(rej), "text": [t for t, _, _ in rej],
                                    "rejected_by": [v for _, v, _ in rej], "reason": [r for _, _, r in rej]}
                                   ).save_to_disk(str(gen / "rejected"))
        row = {"iteration": k, "holdout_perplexity": 10.0 * k, "holdout_cross_entropy": 2.3 + k / 10,
               "holdout_perplexity_se": 0.5 * k, "holdout_tokens": 647, "lang_distinct_words_true_sample": 120,
               "sample_words_mean": 3.0 + k, "sample_words_mean_se": 0.25}
        stats(it / "evaluate", {})
        (it / "evaluate" / "metrics.json").write_text(json.dumps(row))
        (it / "evaluate" / "qualitative.jsonl").write_text("".join(
            json.dumps({"iteration": k, "index": i, "prompt": p, "completion": f"{p} ... answer {k}"}) + "\n"
            for i, p in enumerate(["Once upon a time", "The capital is"])))
        rows.append({**row, "curate/synthetic_fraction": 0.0 if k == 1 else 1.0})
        for phase, seconds in zip(("curate", "train", "generate", "evaluate"), (0.5, 3.0, 2.0, 1.0)):
            steps[f"{k}.{phase}"] = {"status": "done", "duration_s": seconds * k}
    steps["0.curate"] = {"status": "done", "duration_s": 1.5}
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "state.json").write_text(json.dumps({"version": 1, "steps": steps}))
    return root


def page_data(html):
    return json.loads(re.search(r'<script type="application/json" id="sb-data">(.*?)</script>', html, re.S).group(1))


def test_the_run_page_holds_figures_samples_lineage_and_times(run_dir):
    out = write_report(RunLayout(run_dir))
    html = out.read_text()
    assert "<link" not in html and 'src="http' not in html  # self-contained
    assert html.count('src="data:image/svg+xml;base64,') >= 3  # the headline, every metric, time per phase
    assert html.index('id="headline"') < html.index('id="metrics"') < html.index('id="samples"')
    samples = page_data(html)
    accepted = [s for s in samples if s["status"] == "accepted"]
    rejected = [s for s in samples if s["status"] == "rejected"]
    assert [s["text"] for s in accepted] == TEXTS[1] + TEXTS[2]
    assert [(s["iteration"], s["rejected_by"], s["reason"]) for s in rejected] == [
        (1, "max_words", "too short"), (2, "no_repeat", "repeats 'cat'"), (2, "max_words", "too short")]
    assert accepted[3]["generation"] == 2 and accepted[3]["parent"] == "real-0" and accepted[3]["prompt"] == "<bos>"
    # the qualitative prompts side by side: one row per prompt, one column per iteration
    table = html[html.index('id="qualitative-table"'):]
    assert table.index("Once upon a time ... answer 1") < table.index("Once upon a time ... answer 2") \
        < table.index("The capital is ... answer 1")
    # time per phase from the journal, and the lineage of each iteration
    times = re.sub(r"\s+", "", html[html.index('id="time-table"'):html.index("</table>", html.index('id="time-table"'))])
    assert "<tr><td>2</td><td>1</td><td>6</td><td>4</td><td>2</td><td>13</td></tr>" in times  # seconds, and the total
    assert "S(1): 3" in html and "iter_001/train/model" in html
    assert "handmade" in html and "fingerprint" in html


def panels_of(html):
    return [p for attr in re.findall(r'data-panels="([^"]*)"', html) for p in attr.split()]


def test_every_metric_draws_errors_as_bands_and_tables_constants(run_dir):
    from collapsebench.analysis import figures as F

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    metrics = sorted({k for r in rows for k in r} - {"iteration", "curate/synthetic_fraction"})
    groups = F.metric_groups(rows, metrics)
    assert not [m for m in groups.drawn if m.endswith("_se")]
    assert groups.errors == {"holdout_perplexity": "holdout_perplexity_se", "sample_words_mean": "sample_words_mean_se"}
    assert groups.constants == {"holdout_tokens": 647.0, "lang_distinct_words_true_sample": 120.0}
    series = F.line_series([{"cell": "c", "metric": "m", "iteration": k, "mean": 10.0 * k, "ci_low": float("nan"),
                             "ci_high": float("nan"), "n": 1} for k in (1, 2)], "m", [F.CellInfo("c")])
    banded = F.with_errors(series, {1: 0.5, 2: 1.0})
    assert banded[0].low == [9.5, 19.0] and banded[0].high == [10.5, 21.0]
    columns, table = F.numbers_table([F.Panel("m", banded)])
    assert columns == ["iteration", "m"] and table == [["1", "10 [9.5, 10.5]"], ["2", "20 [19, 21]"]]

    html = write_report(RunLayout(run_dir)).read_text()
    panels = panels_of(html)
    assert "holdout_perplexity" in panels and "sample_words_mean" in panels
    assert not [p for p in panels if p.endswith("_se") or p in groups.constants]
    constants = html[html.index('id="constants-table"'):html.index("</table>", html.index('id="constants-table"'))]
    assert "holdout_tokens" in constants and "647" in constants and "lang_distinct_words_true_sample" in constants
    assert 'class="fig full"' in html and 'class="figure-numbers"' in html  # headline full width, numbers beside


def test_the_page_escapes_what_runs_wrote(run_dir):
    import datasets

    path = run_dir / "iter_001" / "generate" / "samples"
    shutil.rmtree(path)
    datasets.Dataset.from_dict({"id": ["a"], "generation": [1], "parent": [""], "prompt": [""],
                                "text": ["</script><script>alert(1)</script>"]}).save_to_disk(str(path))
    html = write_report(RunLayout(run_dir)).read_text()
    assert "<script>alert(1)" not in html
    assert page_data(html)[0]["text"] == "</script><script>alert(1)</script>"


def test_cards_in_every_dataset_and_model_folder(run_dir):
    write_report(RunLayout(run_dir))
    model = (run_dir / "iter_002" / "train" / "model" / "README.md").read_text()
    front = yaml.safe_load(model.split("---")[1])
    assert front["library_name"] == "transformers" and "collapsebench" in front["tags"]
    assert "# M(2)" in model and "iter_001/train/model" in model  # where it started
    assert "| S(1): samples of M(1) | 3 |" in model  # what it was trained on
    assert "| holdout_perplexity | 20 |" in model  # its evaluation
    assert "## Sampling (how S(2) was drawn)" in model and "name: transformers" in model
    samples = (run_dir / "iter_002" / "generate" / "samples" / "README.md").read_text()
    assert "| max_words | 5 | 4 |" in samples  # validator outcomes
    assert "1 x no_repeat: repeats 'cat'" in samples and "1 x max_words: too short" in samples
    assert "words_per_row_mean | 2.33333" in samples  # "the cat", "sat sat sat", "blue sky": 7 words / 3
    assert "new_tokens | 30" in samples
    dataset = (run_dir / "iter_001" / "curate" / "dataset" / "README.md").read_text()
    assert "| real data | 3 |" in dataset and "regime" in dataset
    # the dataset folders still load, card and all
    import datasets

    assert datasets.load_from_disk(str(run_dir / "iter_002" / "generate" / "samples"))["text"] == TEXTS[2]


@pytest.mark.slow
def test_the_page_in_a_headless_browser(run_dir):
    """Chromium (Debian's package) through Playwright: no console or page errors, the figures render,
    and the sample browser filters by iteration, status and validator."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    out = write_report(RunLayout(run_dir))
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 3 and all(w > 100 for w in widths)
        # the panels the page names: no standard error of its own, no constant; constants in their table
        panels = page.eval_on_selector_all("figure[data-panels]", "fs => fs.map(f => f.dataset.panels)")
        named = [p for attr in panels for p in attr.split()]
        assert "holdout_perplexity" in named and not [p for p in named if p.endswith("_se") or p == "holdout_tokens"]
        assert "holdout_tokens" in page.inner_text("#constants-table")
        # a headline figure spans the page's width; another has its numbers beside it
        full = page.eval_on_selector("figure.full img", "i => i.getBoundingClientRect().width")
        body = page.eval_on_selector("body", "b => b.clientWidth")
        assert full > 0.8 * body
        beside = page.eval_on_selector("#metrics ~ figure .figure-numbers",
                                       "t => t.getBoundingClientRect().left > t.closest('figure').querySelector('img')"
                                       ".getBoundingClientRect().left")
        assert beside

        def shown():
            return page.eval_on_selector_all("#sb-rows tr", "rows => rows.map(r => [r.dataset.iteration, r.dataset.status])")

        assert len(shown()) == 6 + 3
        page.select_option("#sb-iteration", "2")
        assert shown() == [["2", "accepted"]] * 3 + [["2", "rejected"]] * 2
        page.select_option("#sb-status", "rejected")
        assert shown() == [["2", "rejected"]] * 2
        page.select_option("#sb-validator", "no_repeat")
        assert shown() == [["2", "rejected"]]
        assert "repeats 'cat'" in page.inner_text("#sb-rows")
        page.select_option("#sb-iteration", "all")
        page.select_option("#sb-validator", "max_words")
        assert shown() == [["1", "rejected"], ["2", "rejected"]]
        page.fill("#sb-search", "zzz")
        assert shown() == [["1", "rejected"]]
        assert page.inner_text("#sb-count") == "1 of 9 samples"
        browser.close()
    assert errors == []
