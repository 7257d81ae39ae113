"""The policy gradient of loss.schedule = "rl" (losses.sequence_logp, group_advantages,
rl_group_loss, policy_gradient), on "logits tables": a free logit per (group, position,
token), so every gradient has a closed form. Checked: a group with p_hat in {0, 1} gives
exactly zero gradient under any weighting; the gradient equals the REINFORCE gradient
computed by hand (numpy, not through this code); over every outcome of a group its
expectation is (K - 1) / K times the true gradient of the expected reward; weighting by
w(p_hat) scales each group's gradient by w / normaliser; the inputs are checked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import paced_train.loop.losses as L
from paced_theory.errors import ConfigError, InputError
from paced_train.config import LossSection
from paced_train.loop.passrates import normaliser


def _case(seed: int = 0, G: int = 3, K: int = 4, T: int = 3, V: int = 5):
    """A logits table theta (G, T, V) (every sample of group g reads theta[g]), completions
    y (G K, T), a mask whose rows have lengths 1..T, and group ids."""
    g = torch.Generator().manual_seed(seed)
    theta = (2 * torch.randn(G, T, V, generator=g, dtype=torch.float64)).requires_grad_(True)
    y = torch.randint(0, V, (G * K, T), generator=g)
    lengths = torch.randint(1, T + 1, (G * K,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    groups = torch.arange(G).repeat_interleave(K)
    return theta, y, mask, groups


def _loss(theta, y, mask, groups, rewards, weights, norm, temperature=1.0, **kw):
    logp = L.sequence_logp(theta[groups], y, mask, temperature)
    return L.policy_gradient(logp, rewards, groups, torch.as_tensor(weights, dtype=torch.float64),
                             norm, **kw)


def _grad(theta, *args, **kw):
    theta.grad = None
    _loss(theta, *args, **kw).backward()
    return theta.grad.clone()


REWARDS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1], dtype=torch.float64)  # 0, 1, 1/2


@pytest.mark.parametrize("scale_std", [False, True])
@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [5.0, 7.0, 0.3], [0.0, 2.0, 1.0]])
def test_a_group_at_p_hat_zero_or_one_gives_exactly_zero_gradient(weights, scale_std):
    theta, y, mask, groups = _case()
    adv = L.group_advantages(REWARDS, groups, 3, scale_std)
    assert torch.count_nonzero(adv[:8]) == 0 and torch.count_nonzero(adv[8:]) == 4
    g = _grad(theta, y, mask, groups, REWARDS, weights, 2.5, scale_std=scale_std)
    assert torch.count_nonzero(g[0]) == 0 and torch.count_nonzero(g[1]) == 0  # exactly 0
    assert torch.count_nonzero(g[2]) > 0
    # the KL term is a regulariser, not the reward: it moves every group (and is what
    # loss.rl_kl > 0 adds), so it is off in the statement above
    kl = torch.rand(12, dtype=torch.float64) * theta[groups].sum((1, 2))
    g = _grad(theta, y, mask, groups, REWARDS, [1.0, 1.0, 1.0], 2.5, kl=kl, kl_coef=0.1)
    assert torch.count_nonzero(g[0]) > 0


def _by_hand(theta, y, mask, groups, rewards, weights, norm, temperature, scale_std):
    """dL/dtheta in numpy from the closed form: for sample j of group g,
    d log pi(y_j) / d theta[g, t] = mask[j, t] (onehot(y_jt) - softmax(theta[g, t] / T)) / T,
    and dL/dtheta[g] = -(w_g / (normaliser K)) sum_j A_j d log pi(y_j) / d theta[g],
    A_j = r_j - mean_g r (divided by sqrt(p (1 - p)) with scale_std)."""
    th, Y, M = theta.detach().numpy(), y.numpy(), mask.numpy()
    gid, r = groups.numpy(), rewards.numpy()
    G, T, V = th.shape
    out = np.zeros_like(th)
    for g in range(G):
        members = np.flatnonzero(gid == g)
        p = r[members].mean()
        z = th[g] / temperature
        soft = np.exp(z - z.max(1, keepdims=True))
        soft /= soft.sum(1, keepdims=True)
        for j in members:
            a = r[j] - p
            if scale_std:
                a = a / np.sqrt(p * (1 - p)) if 0 < p < 1 else 0.0
            for t in range(T):
                score = (np.eye(V)[Y[j, t]] - soft[t]) / temperature * M[j, t]
                out[g, t] -= weights[g] / (norm * len(members)) * a * score
    return out


@pytest.mark.parametrize("scale_std", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_gradient_is_the_reinforce_gradient_computed_by_hand(scale_std, temperature):
    theta, y, mask, groups = _case(seed=3)
    rewards = torch.tensor([1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0], dtype=torch.float64)
    weights, norm = [0.5, 2.0, 1.0], 3.7
    got = _grad(theta, y, mask, groups, rewards, weights, norm, temperature,
                scale_std=scale_std)
    want = _by_hand(theta, y, mask, groups, rewards, weights, norm, temperature, scale_std)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-13)
    assert np.abs(want).max() > 1e-3


@pytest.mark.parametrize("K", [2, 3])
def test_over_every_outcome_the_estimate_is_k_minus_one_over_k_of_the_true_gradient(K):
    """One token, V = 3, reward 1 for token 0: the true gradient of E[r] = pi_0 is
    pi_0 (e_0 - pi). Averaging the estimate over all V^K outcomes of a group, weighted by
    their probabilities, gives -(K - 1) / K of it (the group-mean baseline holds the
    sample's own reward; docs/theory.md §4.1)."""
    theta = torch.tensor([[0.3, -0.5, 1.1]], dtype=torch.float64, requires_grad=True)
    pi = torch.softmax(theta.detach()[0], 0).numpy()
    mask, groups = torch.ones(K, 1, dtype=torch.float64), torch.zeros(K, dtype=torch.long)
    expected = np.zeros(3)
    for ys in itertools.product(range(3), repeat=K):
        y = torch.tensor(ys)[:, None]
        rewards = (y[:, 0] == 0).double()
        theta.grad = None
        logp = L.sequence_logp(theta.expand(K, 1, 3), y, mask)
        L.policy_gradient(logp, rewards, groups, torch.ones(1), 1.0).backward()
        expected += np.prod(pi[list(ys)]) * theta.grad[0].numpy()
    true = pi[0] * (np.eye(3)[0] - pi)
    np.testing.assert_allclose(expected, -(K - 1) / K * true, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", ["sum", "mean", "none"])
@pytest.mark.parametrize("scale_std,kl_coef", [(False, 0.0), (True, 0.0), (False, 0.2)])
def test_weighting_scales_each_groups_gradient_by_its_weight_over_the_normaliser(
        mode, scale_std, kl_coef):
    theta, y, mask, groups = _case(seed=5, G=4)
    rewards = torch.tensor([1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1],
                           dtype=torch.float64)
    p_hat = np.array([0.5, 0.75, 0.25, 0.75])
    w = p_hat * (1 - p_hat)  # PACED's w(p_hat) from each group's own c / K
    norm = normaliser(w, mode, 8)
    kl = (theta[groups] ** 2).sum((1, 2)) if kl_coef else None
    got = _grad(theta, y, mask, groups, rewards, w, norm, scale_std=scale_std, kl=kl,
                kl_coef=kl_coef)
    want = torch.zeros_like(got)
    for g in range(4):  # each group alone, weight 1, normaliser 1
        rows = groups == g
        theta.grad = None
        logp = L.sequence_logp(theta[g].expand(4, -1, -1), y[rows], mask[rows])
        kl_g = (theta[g] ** 2).sum().expand(4) if kl_coef else None
        L.policy_gradient(logp, rewards[rows], torch.zeros(4, dtype=torch.long),
                          torch.ones(1, dtype=torch.float64), 1.0, scale_std=scale_std,
                          kl=kl_g, kl_coef=kl_coef).backward()
        want += w[g] / norm * theta.grad
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_sequence_logp_sums_the_scored_tokens_and_ignores_the_rest():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, generator=g, requires_grad=True)
    y = torch.randint(0, 6, (2, 4), generator=g)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    want = [sum(torch.log_softmax(logits[b, t].detach() / 2.0, 0)[y[b, t]].item()
                for t in range(4) if mask[b, t]) for b in range(2)]
    torch.testing.assert_close(L.sequence_logp(logits, y, mask, 2.0), torch.tensor(want))
    dirty = logits.detach().clone()
    dirty[0, 3], dirty[1, 1:] = float("nan"), float("inf")  # unscored positions
    dirty.requires_grad_(True)
    value = L.sequence_logp(dirty, y, mask, 2.0)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(dirty.grad).all()
    assert torch.count_nonzero(dirty.grad[1, 1:]) == 0


def test_bad_inputs_are_refused_by_name():
    logp, r = torch.zeros(4), torch.tensor([1.0, 0.0, 1.0, 0.0])
    groups = torch.tensor([0, 0, 1, 1])
    with pytest.raises(InputError, match="groups"):
        L.policy_gradient(logp, r, torch.tensor([0, 0, 1, 2]), torch.ones(2), 1.0)
    with pytest.raises(InputError, match="at least one sample"):
        L.policy_gradient(logp, r, groups, torch.ones(3), 1.0)
    with pytest.raises(InputError, match="seq_logp and rewards"):
        L.policy_gradient(logp[:3], r, groups, torch.ones(2), 1.0)
    with pytest.raises(InputError, match="finite and >= 0"):
        L.policy_gradient(logp, r, groups, torch.tensor([1.0, -1.0]), 1.0)
    with pytest.raises(InputError, match="normaliser"):
        L.policy_gradient(logp, r, groups, torch.ones(2), 0.0)
    with pytest.raises(ConfigError, match="loss.rl_kl"):
        L.policy_gradient(logp, r, groups, torch.ones(2), 1.0, kl_coef=-1.0)
    with pytest.raises(InputError, match="needs kl"):
        L.policy_gradient(logp, r, groups, torch.ones(2), 1.0, kl_coef=0.1)
    with pytest.raises(InputError, match="targets"):
        L.sequence_logp(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long),
                        torch.ones(2, 3))
    with pytest.raises(ConfigError, match="not a divergence"):
        L.divergence("rl", torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1),
                     LossSection())
