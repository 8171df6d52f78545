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


# Critic-free estimators: two groups, interleaved (group 5: scores 2, 4, 6; group 7: 1, 1).
SCORES, GROUPS = [2.0, 1.0, 4.0, 6.0, 1.0], [5, 7, 5, 5, 7]


def test_grpo_divides_by_the_groups_std_and_dr_grpo_does_not():
    scores, groups = t(SCORES), torch.tensor(GROUPS)
    # group 5: mean 4, centred -2, 0, 2, Bessel std sqrt(8 / 2) = 2; group 7: all equal, so 0
    assert ppo.grpo_advantages(scores, groups).tolist() == pytest.approx([-1, 0, 0, 1, 0], abs=1e-5)
    assert ppo.grpo_advantages(scores, groups, scale_by_std=False).tolist() == pytest.approx([-2, 0, 0, 2, 0])
    assert ppo.group_advantages("grpo", scores, groups).tolist() == pytest.approx([-1, 0, 0, 1, 0], abs=1e-5)


def test_grpo_with_two_samples_gives_plus_and_minus_one_over_root_two():
    out = ppo.grpo_advantages(t([0.0, 1.0]), torch.tensor([0, 0]))  # mean 0.5, std sqrt(0.5)
    assert out.tolist() == pytest.approx([-(0.5**0.5), 0.5**0.5], abs=1e-5)


def test_rloo_subtracts_the_mean_of_the_other_samples():
    scores, groups = t(SCORES), torch.tensor(GROUPS)
    # 2 - (4 + 6) / 2 = -3, 4 - (2 + 6) / 2 = 0, 6 - (2 + 4) / 2 = 3; group 7: 1 - 1 = 0
    assert ppo.rloo_advantages(scores, groups).tolist() == pytest.approx([-3, 0, 0, 3, 0])
    assert ppo.group_advantages("rloo", scores, groups).tolist() == pytest.approx([-3, 0, 0, 3, 0])


def test_a_group_of_one_and_an_unknown_estimator_are_refused():
    with pytest.raises(ValueError, match="at least 2 samples"):
        ppo.grpo_advantages(t([1.0, 0.0, 1.0]), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        ppo.rloo_advantages(t([1.0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="grpo, rloo"):
        ppo.group_advantages("gae", t([1.0, 0.0]), torch.tensor([0, 0]))


def test_reward_to_go_sums_the_rewards_still_to_come_and_equals_gae_without_values():
    rewards, mask = t([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]]), t([[1, 1, 1], [1, 0, 0]])
    assert ppo.reward_to_go(rewards, mask).flatten().tolist() == pytest.approx([0.6, 0.5, 0.3, 0.4, 0, 0])
    g = torch.Generator().manual_seed(0)
    rewards, mask = torch.randn(4, 6, generator=g), t([[1] * 6, [1] * 3 + [0] * 3, [1] + [0] * 5, [0] * 6])
    adv, _ = ppo.gae(rewards * mask, torch.zeros(4, 6), mask, gamma=1.0, lam=1.0)
    assert torch.allclose(ppo.reward_to_go(rewards, mask), adv, atol=1e-6)


def test_a_sequence_advantage_reaches_every_token_minus_the_kl_still_to_come():
    seq_adv, mask = t([1.0, -1.0]), t([[1, 1, 1], [1, 0, 0]])
    kl = t([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]]) * mask
    # token rewards (kl_coef 0.5): [-0.05, -0.1, -0.15 + 1], [-0.2 - 1]; summed from each token to the end
    out = ppo.reward_to_go(ppo.token_rewards(seq_adv, kl, mask, kl_coef=0.5), mask)
    assert out.flatten().tolist() == pytest.approx([0.7, 0.75, 0.85, -1.2, 0, 0])
    out = ppo.reward_to_go(ppo.token_rewards(seq_adv, kl, mask, kl_coef=0.0), mask)
    assert out.flatten().tolist() == pytest.approx([1, 1, 1, -1, 0, 0])  # no KL: the advantage broadcast
