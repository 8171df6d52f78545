"""PPO maths against hand-computed values (each case worked out in the comment beside it)."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from datarl.rl import ppo  # noqa: E402


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_masked_mean_ignores_padding():
    x, mask = t([[1, 2, 3], [4, 5, 6]]), t([[1, 1, 0], [1, 0, 0]])
    assert float(ppo.masked_mean(x, mask)) == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    assert ppo.masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 4.0])


def test_whiten_uses_only_real_tokens_and_leaves_padding_zero():
    out = ppo.masked_whiten(t([[1, 2, 3, 100]]), t([[1, 1, 1, 0]]))
    assert out.tolist()[0] == pytest.approx([-1.0, 0.0, 1.0, 0.0], abs=1e-6)  # mean 2, unbiased var 1


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("k1", 0.5),  # logp - ref = -1.0 - (-1.5)
        ("k3", math.exp(-0.5) - 1 + 0.5),  # exp(ref - logp) - (ref - logp) - 1
    ],
)
def test_kl_estimators(kind, expected):
    assert float(ppo.kl_per_token(t([-1.0]), t([-1.5]), kind)[0]) == pytest.approx(expected, abs=1e-6)


def test_k3_is_never_negative_and_bad_kind_is_refused():
    diff = torch.linspace(-3, 3, 13)
    assert bool((ppo.kl_per_token(diff, torch.zeros(13), "k3") >= 0).all())
    with pytest.raises(ValueError, match="k1"):
        ppo.kl_per_token(t([0.0]), t([0.0]), "k2")


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = t([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]])
    mask = t([[1, 1, 1], [1, 0, 0]])
    r = ppo.token_rewards(t([1.0, 0.5]), kl * mask, mask, kl_coef=0.5)
    assert r.tolist()[0] == pytest.approx([-0.05, -0.1, 0.85])  # -0.15 + 1.0 at the end
    assert r.tolist()[1] == pytest.approx([0.3, 0.0, 0.0])  # -0.2 + 0.5, padding stays 0


def test_gae_gamma_lambda_one_gives_monte_carlo_advantages():
    adv, ret = ppo.gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.4, 0.3])  # 1 - V_t
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_gae_with_discount_and_lambda():
    adv, _ = ppo.gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=0.9, lam=0.5)
    # deltas: 0.9*0.6-0.5 = 0.04, 0.9*0.7-0.6 = 0.03, 1-0.7 = 0.3; A_t = delta_t + 0.45 * A_{t+1}
    assert adv.tolist()[0] == pytest.approx([0.04 + 0.45 * 0.165, 0.165, 0.3])


def test_gae_does_not_bootstrap_from_padding():
    adv, ret = ppo.gae(t([[0, 1, 0]]), t([[0.5, 0.7, 9.9]]), t([[1, 1, 0]]), gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.5, 0.3, 0.0])  # the 9.9 behind the end is never used
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 0.0])


@pytest.mark.parametrize(
    "advantage, loss, clipfrac",
    [
        (1.0, -1.2, 1.0),  # ratio 1.5 clipped to 1.2: max(-1.5, -1.2)
        (-1.0, 1.5, 0.0),  # negative advantage: the unclipped 1.5 is the larger
    ],
)
def test_policy_loss_clips_the_ratio(advantage, loss, clipfrac):
    value, stats = ppo.policy_loss(t([[math.log(1.5)]]), t([[0.0]]), t([[advantage]]), t([[1.0]]), clip_eps=0.2)
    assert float(value) == pytest.approx(loss, abs=1e-6)
    assert stats.clipfrac == clipfrac


def test_policy_loss_gradient_is_zero_once_clipped():
    logp = torch.tensor([[math.log(1.5)]], requires_grad=True)
    loss, _ = ppo.policy_loss(logp, t([[0.0]]), t([[1.0]]), t([[1.0]]), clip_eps=0.2)
    loss.backward()
    assert float(logp.grad) == 0.0


def test_value_loss_clipped_and_unclipped():
    loss, stats = ppo.value_loss(t([[1.0]]), t([[0.5]]), t([[2.0]]), t([[1.0]]), clip=0.2)
    assert float(loss) == pytest.approx(0.5 * 1.69)  # clipped value 0.7: (0.7 - 2)^2 > (1 - 2)^2
    assert stats.clipfrac == 1.0
    loss, _ = ppo.value_loss(t([[1.0]]), t([[0.5]]), t([[2.0]]), t([[1.0]]), clip=None)
    assert float(loss) == pytest.approx(0.5)


def test_entropy_of_uniform_logits_is_log_k():
    assert float(ppo.entropy_from_logits(torch.zeros(4))) == pytest.approx(math.log(4))


def test_adaptive_kl_controller_moves_towards_target():
    ctl = ppo.AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, 100)  # error clipped to +0.2: 0.1 * (1 + 0.2 * 100 / 10000)
    assert ctl.value == pytest.approx(0.1002)
    ctl.update(0.0, 100)  # error -0.2
    assert ctl.value == pytest.approx(0.1002 * (1 - 0.002))
    restored = ppo.AdaptiveKLController(0.5, target=6.0, horizon=10000)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value
    fixed = ppo.FixedKLController(0.05)
    fixed.update(100.0, 10)
    assert fixed.value == 0.05
