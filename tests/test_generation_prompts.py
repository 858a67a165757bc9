"""Prompt sources: unconditional, real prefixes (start / uniform, K = 0), real blocks, prompt datasets,
the parts regenerated from the real documents or from their previous generation."""

import json

import pytest

from collapsebench.errors import UserError
from collapsebench.prompts import builtin as P
from generation_fixtures import gen_ctx


@pytest.fixture
def ctx(gen_base, tmp_path):
    return gen_ctx(gen_base, tmp_path)


@pytest.fixture
def tok(ctx):
    from collapsebench.models.loading import load_tokenizer

    return load_tokenizer(ctx.model_dir())


def _docs(ctx):
    real = ctx.real()
    return dict(zip(real["id"], real["text"]))


def test_unconditional(ctx, tok):
    ds = P.unconditional(ctx, 5, tok)
    assert ds["prompt"] == [""] * 5 and ds["parent"] == [""] * 5


def test_real_prefix_start_and_uniform(ctx, tok):
    docs = _docs(ctx)
    start = P.real_prefix(ctx, 60, tok, tokens=3)
    assert len(start) == 60
    for prompt, parent in zip(start["prompt"], start["parent"]):
        assert docs[parent].startswith(prompt) and prompt
        assert len(tok(prompt, add_special_tokens=False)["input_ids"]) <= 3
    uniform = P.real_prefix(ctx, 60, tok, tokens=3, position="uniform")
    assert all(p in docs[d] for p, d in zip(uniform["prompt"], uniform["parent"]))
    assert sum(not docs[d].startswith(p) for p, d in zip(uniform["prompt"], uniform["parent"])) > 20
    assert P.real_prefix(ctx, 60, tok, tokens=3, position="uniform")["prompt"] == uniform["prompt"]  # seeded


def test_real_prefix_zero_tokens_is_unconditional(ctx, tok):
    ds = P.real_prefix(ctx, 7, tok, tokens=0, position="uniform")
    assert ds["prompt"] == [""] * 7 and ds["parent"] == [""] * 7
    with pytest.raises(UserError, match="position"):
        P.real_prefix(ctx, 7, tok, tokens=3, position="middle")


def test_real_blocks_cover_the_token_stream(ctx, tok):
    docs = _docs(ctx)
    blocks = P.real_blocks(ctx, None, tok, block_tokens=16)
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in docs.values())
    assert len(blocks) == n_tokens // 16  # one group of < 1000 documents
    assert blocks["parent"][0] == ctx.real()["id"][0]
    assert set(blocks["parent"]) <= set(docs) and len(set(blocks["parent"])) > len(blocks) // 2
    first = tok(blocks["prompt"][0], add_special_tokens=False)["input_ids"]
    assert len(first) == 16  # blocks run across documents, EOS between them, as the trainer packs
    head = blocks["prompt"][0].split(tok.eos_token)[0]
    assert head == docs[blocks["parent"][0]][: len(head)]
    fewer = P.real_blocks(ctx, 10, tok, block_tokens=16)
    assert len(fewer) == 10 and set(fewer["prompt"]) <= set(blocks["prompt"])
    more = P.real_blocks(ctx, len(blocks) + 5, tok, block_tokens=16)
    assert more["prompt"][: len(blocks)] == blocks["prompt"]
    with pytest.raises(UserError, match="fewer than"):
        P.real_blocks(ctx, None, tok, block_tokens=10**6)


def test_prompt_dataset_templates_and_parents(ctx, tok, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"q{i}", "question": f"what is {i} plus {i}?"}) for i in range(6)))
    fmt = P.prompt_dataset(ctx, None, tok, path=str(path), template="user: {question}\nassistant:")
    assert fmt["prompt"][2] == "user: what is 2 plus 2?\nassistant:" and fmt["parent"] == [f"q{i}" for i in range(6)]
    jin = P.prompt_dataset(ctx, 4, tok, path=str(path), template="{{ question | upper }}", id_field="none")
    assert len(jin) == 4 and all(p == p.upper() for p in jin["prompt"])
    assert all(par.startswith("prompt-") for par in jin["parent"])
    with pytest.raises(UserError, match="columns: id, question"):
        P.prompt_dataset(ctx, None, tok, path=str(path), template="{answer}")
    with pytest.raises(UserError, match="failed for every row.*unsafe"):
        P.prompt_dataset(ctx, None, tok, path=str(path), template="{{ question.__class__.__mro__ }}")
    with pytest.raises(UserError, match="generate.prompts.path: file not found"):
        P.prompt_dataset(ctx, None, tok, path="missing.jsonl")


def test_prompts_never_come_from_the_holdout(gen_base, tmp_path):
    """Prompts drawn from the file the real data came from skip the held-out documents, so the model
    is never prompted with its own evaluation data."""
    from collapsebench.models.loading import load_tokenizer
    from collapsebench.prompts.builtin import prompt_dataset, real_prefix

    corpus = gen_base.parent / "corpus.txt"
    ctx = gen_ctx(gen_base, tmp_path)
    tok = load_tokenizer(ctx.model_dir())
    held_out = set(ctx.holdout()["text"])
    prompts = prompt_dataset(ctx, None, tok, path=str(corpus), sample_by="line")
    leaked = [p for p in prompts["prompt"] if p in held_out]
    assert leaked == [], f"{len(leaked)} of {len(prompts)} prompts are held-out documents"
    assert len(prompts) == len(corpus.read_text().splitlines()) - len(held_out)
    prefixes = real_prefix(ctx, 50, tok, tokens=3)
    assert not set(prefixes["parent"]) & set(ctx.holdout()["id"])
    with pytest.raises(UserError, match="held-out"):  # a prompt file that is nothing but the holdout
        only = tmp_path / "held_out.txt"
        only.write_text("\n".join(sorted(held_out)) + "\n")
        prompt_dataset(ctx, None, tok, path=str(only), sample_by="line")


def _regenerations(ctx, tok, iteration, parents, texts):
    """Commit iteration ``iteration``'s samples: one regeneration per parent, with its token ids."""
    import datasets

    datasets.Dataset.from_dict({
        "id": [f"g{iteration}-{i}" for i in range(len(parents))], "origin": ["synthetic"] * len(parents),
        "generation": [iteration] * len(parents), "parent": parents, "text": texts,
        "input_ids": tok(texts, add_special_tokens=False)["input_ids"],
    }).save_to_disk(str(ctx.phase_dir(iteration, "generate") / "samples"))


def test_parts_from_previous_generation_prompts_each_part_with_the_text_it_was_trained_on(gen_base, tmp_path):
    """003's Algorithm 1: after training M_i on [D_0^(i), ..., D_i^(0)], D_k^(i+1-k) <= M_i(D_k^(i-k)).
    At iteration 3 of 3 parts, parts 0 and 1 are prompted from iteration 2's regeneration of each
    document (what D(3) held), part 2 (fresh in D(3)) from the real document; the parent stays the
    real document, the part that is replaced. ``parts_from_real`` prompts every part from the real
    document whatever the model trained on."""
    from collapsebench.api import PhaseContext

    base = gen_ctx(gen_base, tmp_path)
    ctx = PhaseContext(config=base.config, run_dir=base.run_dir, iteration=3, phase="generate", seed=7,
                       out_dir=base.run_dir / "iter_003" / "generate.tmp")
    ctx.out_dir.mkdir(parents=True)
    tok = P_tok(ctx)
    real = ctx.real()
    n = len(real)
    earlier = real.select(range(2 * n // 3))  # parts 0 and 1 by position
    regen_text = {i: f"regenerated {j} of the document" for j, i in enumerate(earlier["id"])}
    _regenerations(ctx, tok, 2, list(regen_text), list(regen_text.values()))
    docs = _docs(ctx)
    prompts = P.parts_from_previous_generation(ctx, n, tok, parts=3, tokens=2)
    assert sorted(prompts["parent"]) == sorted(real["id"])
    for prompt, parent in zip(prompts["prompt"], prompts["parent"]):
        source = regen_text.get(parent, docs[parent])  # the previous generation; real for the fresh part
        assert prompt == tok.decode(tok(source, add_special_tokens=False)["input_ids"][:2])
    from_real = P.parts_from_real(ctx, n, tok, parts=3, tokens=2)
    real_prompt = dict(zip(from_real["parent"], from_real["prompt"]))
    assert all(prompt == tok.decode(tok(docs[parent], add_special_tokens=False)["input_ids"][:2])
               for parent, prompt in real_prompt.items())
    changed = {parent for prompt, parent in zip(prompts["prompt"], prompts["parent"]) if prompt != real_prompt[parent]}
    assert changed <= set(regen_text) and len(changed) > len(regen_text) // 2
    # a document of an earlier part that iteration 2 did not regenerate has no previous generation
    _regenerations(ctx, tok, 2, list(regen_text)[1:], list(regen_text.values())[1:])
    with pytest.raises(UserError, match="parts_from_previous_generation"):
        P.parts_from_previous_generation(ctx, n, tok, parts=3, tokens=2)


def P_tok(ctx):
    from collapsebench.models.loading import load_tokenizer

    return load_tokenizer(ctx.model_dir(1))
