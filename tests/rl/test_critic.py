"""The two critics behind one interface (``datarl.rl.critic``): what each trains, what each checkpoints, that
a pass run ahead serves the update as a fresh one would, and that a warm-up leaves the policy without gradients."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from datarl.models.loading import load_policy  # noqa: E402
from datarl.models.tiny import MICRO, build_tiny_policy  # noqa: E402
from datarl.rl import ppo  # noqa: E402
from datarl.rl.critic import Critic, SeparateCritic, SharedCritic, load_critic  # noqa: E402
from datarl.rl.rollout import pack  # noqa: E402

TEXTS = [f"item {i} is {i * 3} and then {i + 1}" for i in range(30)]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("critic") / "policy"
    policy = build_tiny_policy(TEXTS, MICRO, seed=0)
    policy.model.save_pretrained(root)
    policy.tokenizer.save_pretrained(root)
    return str(root)


def make(policy_dir, value_init):
    """A fresh trainable policy and its critic; the zero value head gets random weights (values that differ)."""
    policy = load_policy(policy_dir)
    torch.manual_seed(0)
    critic = load_critic(value_init, policy_dir, policy.model)
    with torch.no_grad():
        value_head(critic).weight.normal_(0, 0.1)
    return policy.model, critic


def value_head(critic):
    return critic.head.head if isinstance(critic, SharedCritic) else critic.model.head


def batch():
    return pack([[5, 6, 7], [8, 9], [10, 11, 12, 13]], [[14, 15], [16, 17, 18], [19]], pad_id=0)


@pytest.mark.parametrize("value_init, kind", [("policy", SeparateCritic), ("shared", SharedCritic)])
def test_load_critic_picks_the_implementation(policy_dir, value_init, kind):
    _, critic = make(policy_dir, value_init)
    assert isinstance(critic, kind)


def test_a_shared_critic_trains_and_checkpoints_its_head_only(policy_dir):
    model, critic = make(policy_dir, "shared")
    assert set(critic.state_dict()) == {"head.weight", "head.bias"}
    trained = {id(p) for p in critic.parameters()}
    assert len(trained) == 2 and not trained & {id(p) for p in model.parameters()}  # the body is the policy's


def test_a_separate_critic_trains_and_checkpoints_its_whole_model(policy_dir):
    model, critic = make(policy_dir, "policy")
    keys = set(critic.state_dict())
    assert {"head.weight", "head.bias"} < keys and any(k.startswith("body.") for k in keys)
    trained = {id(p) for p in critic.parameters()}
    assert len(trained) == len(keys) and not trained & {id(p) for p in model.parameters()}


@pytest.mark.parametrize("value_init", ["policy", "shared"])
def test_a_checkpointed_critic_gives_the_same_values(policy_dir, value_init):
    _, critic = make(policy_dir, value_init)
    _, fresh = make(policy_dir, value_init)
    with torch.no_grad():
        value_head(fresh).weight.zero_()
        assert not torch.equal(critic.values(batch()), fresh.values(batch()))
        fresh.load_state_dict(critic.state_dict())
        assert torch.equal(critic.values(batch()), fresh.values(batch()))


@pytest.mark.parametrize("value_init", ["policy", "shared"])
def test_a_pass_run_ahead_serves_the_update_as_a_fresh_pass(policy_dir, value_init):
    _, critic = make(policy_dir, value_init)
    b = batch()
    sub = b.select([2, 0])  # a micro-batch in a shuffled order
    ahead = critic.run_ahead(sub, 1.0, True)
    reused, fresh = critic.update_pass(sub, 1.0, True, ahead), critic.update_pass(sub, 1.0, True)
    for name in ("logp", "entropy", "values"):
        a, f = getattr(reused, name) * sub.mask, getattr(fresh, name) * sub.mask
        assert torch.allclose(a, f, atol=1e-6), name
    with torch.no_grad():
        assert torch.allclose(critic.values(b) * b.mask, critic.run_ahead(b, 1.0, True).values * b.mask, atol=1e-6)


def _grads(critic: Critic, model, train_policy: bool):
    sub = batch()
    out = critic.update_pass(sub, 1.0, train_policy)
    advantages = torch.linspace(-1, 1, sub.mask.numel()).reshape(sub.mask.shape)
    pl, _ = ppo.policy_loss(out.logp, out.logp.detach() - 0.1, advantages, sub.mask, 0.2)
    vl, _ = ppo.value_loss(out.values, out.values.detach(), torch.ones_like(sub.mask), sub.mask, 0.2)
    critic.backward(pl, vl, 0.5, train_policy)
    policy_grads = [p.grad for p in model.parameters()]
    critic_grads = [p.grad for p in critic.parameters()]
    return policy_grads, critic_grads


@pytest.mark.parametrize("value_init", ["policy", "shared"])
def test_a_warm_up_backpropagates_into_the_critic_only(policy_dir, value_init):
    model, critic = make(policy_dir, value_init)
    policy_grads, _ = _grads(critic, model, train_policy=False)
    assert all(g is None for g in policy_grads)  # no policy graph was built (shared: not even the body's)
    assert value_head(critic).weight.grad.abs().sum() > 0  # the head learns


@pytest.mark.parametrize("value_init", ["policy", "shared"])
def test_after_the_warm_up_both_losses_reach_their_parameters(policy_dir, value_init):
    model, critic = make(policy_dir, value_init)
    policy_grads, critic_grads = _grads(critic, model, train_policy=True)
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in policy_grads) > len(policy_grads) // 2
    assert all(g is not None for g in critic_grads)
