"""The losses registry: TCE, focal and cross-entropy against transformers' own loss."""

import pytest
import torch

from collapsebench.errors import UserError
from collapsebench.losses.builtin import IGNORE_INDEX, compute_loss_func, cross_entropy, focal, truncated_cross_entropy


def batch(seed=0, vocab=11):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 7, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, (3, 7), generator=g)
    labels[0, :2] = IGNORE_INDEX  # ignored positions, as padding or prompt tokens
    labels[2, 5:] = IGNORE_INDEX
    return logits, labels


def transformers_loss(logits, labels):
    from transformers.loss.loss_utils import ForCausalLMLoss

    return ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1])


def test_cross_entropy_matches_transformers_shift_and_ignore_index():
    logits, labels = batch()
    assert cross_entropy(logits, labels).item() == pytest.approx(transformers_loss(logits, labels).item(), rel=1e-6)


def test_tce_gamma_one_and_focal_gamma_zero_equal_cross_entropy():
    logits, labels = batch(1)
    ce = cross_entropy(logits, labels).item()
    assert truncated_cross_entropy(logits, labels, gamma=1.0).item() == pytest.approx(ce, rel=1e-6)
    assert focal(logits, labels, gamma=0.0).item() == pytest.approx(ce, rel=1e-6)
    assert focal(logits, labels, gamma=2.0).item() < ce


def test_tce_masked_tokens_get_no_gradient_and_normalisation():
    logits, labels = batch(2)
    probs = torch.softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    valid = labels[:, 1:] != IGNORE_INDEX
    gamma = float(probs[valid].median())
    masked = valid & (probs > gamma)
    kept = valid & ~masked
    assert masked.any() and kept.any()
    x = logits.clone().requires_grad_(True)
    loss = truncated_cross_entropy(x, labels, gamma=gamma)
    loss.backward()
    grad = x.grad[:, :-1].abs().sum(-1)
    assert torch.all(grad[masked] == 0) and torch.all(grad[kept] > 0)
    # default: mean over all valid tokens; "kept": over the kept ones
    nll = -torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    assert loss.item() == pytest.approx((nll[kept].sum() / valid.sum()).item(), rel=1e-5)
    kept_mean = truncated_cross_entropy(logits, labels, gamma=gamma, normalize="kept").item()
    assert kept_mean == pytest.approx(nll[kept].mean().item(), rel=1e-5)


def test_compute_loss_func_rescales_to_accumulated_tokens_and_resolves_plugins():
    logits, labels = batch(3)
    out = {"logits": logits}
    fn = compute_loss_func({"name": "tests_plugin_loss:double_ce"})
    n_valid = int((labels[..., 1:] != IGNORE_INDEX).sum())
    assert fn(out, labels).item() == pytest.approx(2 * cross_entropy(logits, labels).item(), rel=1e-6)
    scaled = fn(out, labels, num_items_in_batch=torch.tensor(4 * n_valid)).item()
    assert scaled == pytest.approx(2 * cross_entropy(logits, labels).item() / 4, rel=1e-5)
    with pytest.raises(UserError, match="gamm"):
        compute_loss_func({"name": "focal", "gamm": 1.0})


@pytest.mark.parametrize("loss", [{"name": "cross_entropy"}, {"name": "truncated_cross_entropy", "gamma": 0.5},
                                  {"name": "focal", "gamma": 2.0}, {"name": "tests_plugin_loss:double_ce"}])
def test_training_with_each_loss_changes_every_parameter(loss):
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=16, n_layer=1, n_head=2, n_embd=16))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 40, (16, 16), generator=g)
    data = [{"input_ids": r, "labels": r} for r in ids]
    args = TrainingArguments(output_dir="/tmp/unused-losses", max_steps=2, per_device_train_batch_size=8,
                             learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=data, compute_loss_func=compute_loss_func(loss)).train()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])]
    assert unchanged == []


def test_losses_report_what_they_did_per_step_and_in_total():
    """TCE reports the share of tokens it masked, focal the mean weight it gave them: per logged
    step (in the log history) and over the whole training (token-weighted)."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from collapsebench.losses.builtin import loss_reporting, phase_report

    logits, labels = batch(4)
    probs = torch.softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    valid = labels[:, 1:] != IGNORE_INDEX
    fn, callback = loss_reporting({"name": "tce", "gamma": 0.5})
    fn({"logits": logits}, labels)
    window = callback.report.flush()
    assert window["tce_masked_fraction"] == pytest.approx(float((probs[valid] > 0.5).float().mean()), rel=1e-6)
    assert window["loss_tokens"] == int(valid.sum())
    fn, callback = loss_reporting({"name": "focal", "gamma": 2.0})
    fn({"logits": logits}, labels)
    assert callback.report.flush()["focal_mean_weight"] == pytest.approx(float(((1 - probs[valid]) ** 2).mean()), rel=1e-5)

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=16, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(0, 40, (32, 16), generator=torch.Generator().manual_seed(1))
    fn, callback = loss_reporting({"name": "tce", "gamma": 0.025})  # near 1/40: some tokens above, some below
    args = TrainingArguments(output_dir="/tmp/unused-losses", max_steps=4, per_device_train_batch_size=8, learning_rate=1e-2,
                             report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, logging_steps=1)
    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r, "labels": r} for r in ids],
                      compute_loss_func=fn, callbacks=[callback])
    trainer.train()
    steps = [row for row in trainer.state.log_history if "loss" in row]
    assert len(steps) == 4 and all(0 < row["tce_masked_fraction"] < 1 for row in steps)
    total = phase_report(trainer.state.log_history, callback)
    weights = [row["loss_tokens"] for row in steps]
    expected = sum(row["tce_masked_fraction"] * w for row, w in zip(steps, weights)) / sum(weights)
    assert total["tce_masked_fraction"] == pytest.approx(expected)


def test_evaluation_passes_score_plain_cross_entropy_whatever_the_training_loss():
    """eval_loss (and the checkpoint best_by_holdout keeps) is held-out cross-entropy: under
    no_grad the loss function is cross_entropy and reports nothing; with gradients it is the
    configured loss."""
    from collapsebench.losses.builtin import loss_reporting

    logits, labels = batch(5)
    out = {"logits": logits}
    probs = torch.softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:].clamp(min=0)[..., None]).squeeze(-1)
    gamma = float(probs[labels[:, 1:] != IGNORE_INDEX].median())  # masks about half the tokens
    fn, callback = loss_reporting({"name": "tce", "gamma": gamma})
    with torch.no_grad():
        assert fn(out, labels).item() == pytest.approx(cross_entropy(logits, labels).item(), rel=1e-6)
    assert callback.report.flush() == {}
    trained = fn({"logits": logits.clone().requires_grad_(True)}, labels).item()
    assert trained == pytest.approx(truncated_cross_entropy(logits, labels, gamma=gamma).item(), rel=1e-6)
    assert trained < cross_entropy(logits, labels).item()
    assert callback.report.flush()["tce_masked_fraction"] > 0


def test_trainer_eval_loss_is_cross_entropy_under_tce():
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from collapsebench.losses.builtin import loss_reporting

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=16, n_layer=1, n_head=2, n_embd=16))
    ids = torch.randint(0, 40, (8, 16), generator=torch.Generator().manual_seed(2))
    data = [{"input_ids": r, "labels": r} for r in ids]
    fn, _ = loss_reporting({"name": "tce", "gamma": 0.02})  # near 1/40: masks a share of the tokens
    args = TrainingArguments(output_dir="/tmp/unused-losses", per_device_eval_batch_size=8, report_to=[],
                             use_cpu=True, disable_tqdm=True)
    got = Trainer(model=model, args=args, eval_dataset=data, compute_loss_func=fn).evaluate()["eval_loss"]
    with torch.no_grad():
        expected = model(input_ids=ids, labels=ids).loss.item()  # transformers' own cross-entropy
        tce = truncated_cross_entropy(model(input_ids=ids).logits, ids, gamma=0.02).item()
    assert got == pytest.approx(expected, rel=1e-5) and tce < expected
