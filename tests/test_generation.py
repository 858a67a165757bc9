"""The quota loop with the transformers backend: constant dataset size under a validator, the
unreachable-target error, several samples per prompt, beam search on real blocks."""

import json

import datasets
import pytest

from collapsebench.config import config_from_dict
from collapsebench.errors import UserError
from collapsebench.generators.hf import generate
from collapsebench.loop import run_experiment
from conftest import tiny_config
from generation_fixtures import build_base, gen_config, gen_ctx

HALF = {"name": "jinja", "template": "{{ text | length % 2 == 0 }}"}  # drops about half


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_base(tmp_path_factory.mktemp("base"))


def test_quota_keeps_dataset_size_across_iterations(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["generate"]["validators"] = [HALF]
    cfg["curate"] = {"regime": {"name": "replace", "alpha": 1.0, "unit": "rows"}}  # the target in samples
    run = run_experiment(config_from_dict(cfg), quiet=True)
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    for k, row in zip((1, 2), rows):
        samples = datasets.load_from_disk(str(run.phase_dir(k, "generate") / "samples"))
        rejected = datasets.load_from_disk(str(run.phase_dir(k, "generate") / "rejected"))
        assert len(samples) == 200 and len(set(samples["id"])) == 200
        assert all(len(t) % 2 == 0 for t in samples["text"])
        assert len(rejected) > 50 and set(rejected["rejected_by"]) == {"jinja"}
        assert all(len(t) % 2 == 1 for t in rejected["text"])
        assert all(r.startswith("template rendered") for r in rejected["reason"])
        assert 0.3 < row["generate/jinja_acceptance"] < 0.7 and row["generate/rounds"] >= 2
        assert row["generate/candidates"] == len(rejected) + 200 + run.committed_stats(k, "generate")["surplus"]
    assert rows[1]["curate/size"] == 200  # D(2) = S(1): the size holds although half was rejected


def test_unreachable_target_names_the_strictest_validator(base, tmp_path):
    ctx = gen_ctx(base, tmp_path, num_samples=40, max_attempts=3,
                  validators=[HALF, {"name": "jinja", "template": "{{ 'zzz' in text }}"}])
    with pytest.raises(UserError) as err:
        generate(ctx, batch_size=16, max_new_tokens=8)
    msg = str(err.value)
    assert "unreachable" in msg and "validator 'jinja_2'" in msg and "generate.max_attempts" in msg


def test_several_samples_per_prompt(base, tmp_path):
    ctx = gen_ctx(base, tmp_path, num_samples=30, shard_size=8, prompts={"name": "real_prefix", "tokens": 2})
    stats = generate(ctx, batch_size=4, max_new_tokens=6, sampling={"num_return_sequences": 3})
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    assert len(samples) == 30 and len(set(samples["id"])) == 30 and stats["samples_per_prompt"] == 3
    assert stats["shards"] == 5  # 10 prompts, 8 // 3 = 2 prompts per shard
    for i in range(0, 30, 3):  # each prompt's three samples sit together and start with it
        group = samples.select(range(i, i + 3))
        assert len(set(group["prompt"])) == 1 and all(t.startswith(group["prompt"][0]) for t in group["text"])
    assert len(set(samples["text"])) > 20


def test_beam_search_on_real_blocks(base, tmp_path):
    ctx = gen_ctx(base, tmp_path, prompts={"name": "real_blocks", "block_tokens": 32})
    stats = generate(ctx, batch_size=8, max_new_tokens=5, keep_prompt=False,
                     sampling={"do_sample": False, "num_beams": 3, "min_new_tokens": 5})
    samples = datasets.load_from_disk(str(ctx.out_dir / "samples"))
    from collapsebench.models.loading import load_tokenizer
    from collapsebench.prompts.builtin import real_blocks

    blocks = real_blocks(ctx, None, load_tokenizer(ctx.model_dir()), block_tokens=32)
    assert stats["target"] == len(blocks) == len(samples)  # num_samples null: one sample per block
    assert samples["prompt"] == blocks["prompt"] and samples["parent"] == blocks["parent"]
    assert stats["sampling"]["num_beams"] == 3


@pytest.mark.parametrize("name", ["wikitext_blocks", "validated_chat"])
def test_shipped_generation_configs_validate(name):
    from pathlib import Path

    from collapsebench.config import load_config
    from collapsebench.validate import check_backends, validate_config

    path = Path(__file__).parents[1] / "configs" / "generation" / f"{name}.yaml"
    assert path.read_text().startswith(f"# collapsebench run configs/generation/{name}.yaml")
    config = load_config(path)
    report = validate_config(config)
    assert any("generate.prompts" in line for line in report.checked)
    built = check_backends(config)
    assert "generate.generator: transformers arguments build" in built
    if name == "wikitext_blocks":
        assert config.resolve_path(config.data.source.kwargs["path"]).resolve() == (
            Path(__file__).parents[2] / "shared" / "data" / "wikitext-2" / "valid.txt").resolve()


def test_first_iteration_generates_from_the_base_model(base, tmp_path):
    """generate.first_from: base: S(1) comes from the untrained base model, as self-consuming setups
    that start from a pretrained model generate; later iterations use their trained model."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from collapsebench.generators.hf import generate_batch, generation_config
    from collapsebench.models.loading import load_tokenizer

    tok = load_tokenizer(base / "iter_001" / "train" / "model")
    torch.manual_seed(11)  # another random model than iteration 1's
    pretrained = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=1, n_head=2, n_embd=32, n_positions=256,
                                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).eval()
    pretrained.save_pretrained(str(tmp_path / "pretrained"))
    tok.save_pretrained(str(tmp_path / "pretrained"))
    greedy = {"do_sample": False}
    raw = gen_config(base, tmp_path, num_samples=4, first_from="base")
    raw["model"] = {"init": "base", "base": str(tmp_path / "pretrained")}
    from collapsebench.api import PhaseContext

    out = tmp_path / "run" / "iter_001" / "generate.tmp"
    out.mkdir(parents=True, exist_ok=True)
    ctx = PhaseContext(config=config_from_dict(raw), run_dir=tmp_path / "run", iteration=1, phase="generate", seed=7,
                       out_dir=out)
    stats = generate(ctx, batch_size=4, max_new_tokens=6, sampling=greedy)
    samples = datasets.load_from_disk(str(out / "samples"))
    expected, _ = generate_batch(pretrained, tok, [""], generation_config(greedy, 6, tok))
    assert set(samples["text"]) == {expected[0]} and stats["model"] == str(tmp_path / "pretrained")
    with pytest.raises(UserError, match="model.base"):
        config_from_dict({**raw, "model": {"init": "scratch"}})


def test_chat_sft_generation_renders_prompts_through_the_chat_template(base, tmp_path):
    from collapsebench.generators.hf import uses_chat_template
    from collapsebench.models.loading import load_tokenizer, prompt_ids

    tok = load_tokenizer(base / "iter_001" / "train" / "model")
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    ids = prompt_ids(tok, ["what is 2 plus 2?"], chat=True)[0]
    assert ids == tok("<user>what is 2 plus 2?<assistant>", add_special_tokens=False)["input_ids"]
    assert prompt_ids(tok, ["hi"])[0][0] == tok.bos_token_id  # plain prompts start with BOS
    raw = gen_config(base, tmp_path)
    assert not uses_chat_template(config_from_dict(raw), None)
    raw["train"] = {"trainer": {"name": "sft", "format": "chat"}}
    assert uses_chat_template(config_from_dict(raw), None) and not uses_chat_template(config_from_dict(raw), False)
