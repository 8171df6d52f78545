"""The SFT loop: a batch run in length-sorted parts is the whole batch's update."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.models.train_lm import LMTrainConfig, _part_losses, tokenize_pairs, train_lm  # noqa: E402

# Prompts and answers of very different lengths, so a whole batch pads a lot and the parts differ from it.
PAIRS = [
    (f"what is {a} plus {b}?" + " please" * (a % 4), f"{a} plus {b} is {a + b}." + " so" * b + f" #### {a + b}")
    for a in range(8)
    for b in range(8)
]


def _policy():
    torch.manual_seed(0)
    return build_tiny_policy([p + " " + r for p, r in PAIRS], MICRO)


def _loss_and_grads(policy, batch, chunk_rows):
    model = policy.model
    model.zero_grad(set_to_none=True)
    total = 0.0
    for loss in _part_losses(model, batch, policy.tokenizer.pad_token_id, chunk_rows):
        loss.backward()
        total += float(loss.detach())
    return total, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("loss_on_prompt", [False, True])
def test_a_batch_run_in_parts_gives_the_whole_batch_loss_and_gradient(loss_on_prompt):
    policy = _policy()
    policy.model.eval()  # no dropout: the two runs must see the same function
    data = tokenize_pairs(policy, PAIRS, loss_on_prompt)
    batch = random.Random(1).sample(data, 13)  # 13 rows: parts of 4, 4, 4, 1
    assert len({len(ids) for ids, _ in batch}) > 4
    whole_loss, whole = _loss_and_grads(policy, batch, 0)
    parts_loss, parts = _loss_and_grads(policy, batch, 4)
    assert parts_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == parts.keys() and whole
    for name in whole:
        torch.testing.assert_close(parts[name], whole[name], rtol=1e-4, atol=1e-6)


def test_training_in_parts_follows_training_whole_batches():
    stats = {}
    weights = {}
    for rows in (0, 8):
        policy = _policy()
        stats[rows] = train_lm(
            policy, PAIRS, LMTrainConfig(steps=5, batch_size=16, lr=5e-3, warmup_steps=1, chunk_rows=rows)
        )
        weights[rows] = {n: p.detach() for n, p in policy.model.named_parameters()}
    assert stats[8]["tokens"] == stats[0]["tokens"]  # the same batches drawn
    assert stats[8]["loss_first"] == pytest.approx(stats[0]["loss_first"], rel=1e-4)
    for name in weights[0]:
        torch.testing.assert_close(weights[8][name], weights[0][name], rtol=1e-3, atol=1e-4)


def test_a_negative_part_size_is_refused():
    with pytest.raises(ValueError, match="chunk_rows"):
        LMTrainConfig(chunk_rows=-1)
