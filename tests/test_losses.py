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
