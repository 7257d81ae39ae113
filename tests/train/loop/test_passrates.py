"""Pass-rate bookkeeping, weights from paced_theory kernels, and normalisers."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import paced_train.loop.passrates as pr
from paced_theory.errors import InputError
from paced_theory.kernels import beta_kernel, estimate_weight
from paced_train.config import WeightsSection
from paced_train.loop.passrates import PassRateTable, normaliser, problem_weights

IDS = [f"p{i}" for i in range(9)]


def measured_table(K: int = 8) -> PassRateTable:
    t = PassRateTable(IDS)
    t.refresh(IDS, list(range(K + 1)), K, step=0)  # p_hat = 0, 1/8, ..., 1
    return t


# ------------------------------------------------------------------------- the table
def test_refresh_replaces_counts_and_stamps_the_step():
    t = PassRateTable(["a", "b", "c"])
    assert np.isnan(t.rates()).all() and t.step.tolist() == [-1, -1, -1]
    t.refresh(["a", "b"], [3, 8], 8, step=5)
    assert t.c.tolist() == [3, 8, 0] and t.n.tolist() == [8, 8, 0]
    assert t.step.tolist() == [5, 5, -1]
    np.testing.assert_allclose(t.rates(["a", "b"]), [3 / 8, 1.0])
    assert np.isnan(t.rates(["c"])[0])
    t.refresh(["a"], [0], 8, step=9)  # a refresh replaces, it does not accumulate
    assert t.c.tolist() == [0, 8, 0] and t.n.tolist() == [8, 8, 0] and t.step[0] == 9
    assert [h["step"] for h in t.history] == [5, 9] and t.history[0]["c"] == [3, 8]


def test_on_policy_samples_count_as_rollouts():
    t = PassRateTable(["a", "b", "c"])
    t.refresh(["a", "b", "c"], [2, 0, 8], 8, step=0)
    t.add(["a", "b", "a"], [1, 0, 1])  # no window: a repeated id counts once per sample
    assert t.c.tolist() == [4, 0, 8] and t.n.tolist() == [10, 9, 8]
    t.add(["c"], [True])
    assert t.c[2] == 9 and t.n[2] == 9
    assert t.step.tolist() == [0, 0, 0]  # an add never moves the stamp (the age is honest)
    assert len(t.history) == 1  # only refreshes are history


def test_a_window_lets_on_policy_samples_move_a_kept_problem_to_0_or_1():
    """The bug of issue 17: accumulated counts can never take 0 < c < n to c = 0 or c = n,
    so reverse KL's kept set froze between refreshes. In a window of K outcomes K failures
    (successes) in a row do, whatever the eviction draws."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        t = PassRateTable(["a", "b"])
        t.refresh(["a", "b"], [3, 5], 8, step=0)
        t.add(["a"] * 8 + ["b"] * 8, [0] * 8 + [1] * 8, window=8, rng=rng)
        assert t.rates().tolist() == [0.0, 1.0] and t.n.tolist() == [8, 8]
    accumulated = PassRateTable(["a"])
    accumulated.refresh(["a"], [3], 8, step=0)
    accumulated.add(["a"] * 100, [0] * 100)
    assert 0 < accumulated.rates()[0] < 1  # the old rule: never 0


def test_window_eviction_is_unbiased():
    """One add to a full window of c of n: the evicted outcome is a success with probability
    c / n, so E[c after] = c - c/n + x (binomial standard error bounds the check)."""
    rng = np.random.default_rng(1)
    reps, after = 4000, []
    for _ in range(reps):
        t = PassRateTable(["a"])
        t.refresh(["a"], [3], 8, step=0)
        t.add(["a"], [0], window=8, rng=rng)
        after.append(int(t.c[0]))
    want, se = 3 - 3 / 8, np.sqrt(3 / 8 * 5 / 8 / reps)
    assert abs(np.mean(after) - want) < 5 * se


def test_exact_pass_probabilities_give_continuous_weights():
    t = PassRateTable(["a", "b", "c"])
    t.set_exact(["a", "b"], [0.3, 0.0001], step=4, history=True)
    np.testing.assert_allclose(t.rates(["a", "b"]), [0.3, 0.0001])
    assert t.step.tolist() == [4, 4, -1] and t.ages(10).tolist() == [6, 6, 11]
    w = problem_weights(WeightsSection(), t, ["a", "b", "c"])
    np.testing.assert_allclose(w, [0.21, 0.0001 * 0.9999, 0.0])  # nearly nothing is 0
    assert problem_weights(WeightsSection(method="hard", lo=0.1, hi=0.9), t,
                           ["a", "b"]).tolist() == [1.0, 0.0]
    # what K rollouts would give in expectation: (1 - P)^K at 0, P^K at 1
    sh = t.shares(0, K=8)
    assert sh["zero"] == pytest.approx((0.7**8 + 0.9999**8) / 2)
    assert sh["one"] == pytest.approx((0.3**8 + 0.0001**8) / 2)
    t.add(["a"], [0], window=8, rng=np.random.default_rng(0))  # exact entries: left alone
    assert t.rates(["a"])[0] == 0.3
    t.refresh(["a"], [8], 8, step=5)  # counts replace an exact entry
    assert t.rates(["a"])[0] == 1.0
    s = PassRateTable(["a", "b", "c"])
    s.load(t.state())
    np.testing.assert_allclose(s.rates(), t.rates())
    with pytest.raises(InputError, match="probability"):
        t.set_exact(["a"], [1.5], step=1)


def test_state_round_trip_and_errors():
    t = measured_table()
    t.add(["p0"], [1])
    s = PassRateTable(IDS)
    s.load(t.state())
    for k in ("c", "n", "step"):
        assert getattr(s, k).tolist() == getattr(t, k).tolist()
    assert s.history == t.history
    with pytest.raises(InputError, match="differ"):
        PassRateTable(IDS[:3]).load(t.state())
    with pytest.raises(InputError, match="'zz'"):
        t.add(["zz"], [1])
    with pytest.raises(InputError, match=r"\[0, 8\]"):
        t.refresh(["p0"], [9], 8, step=1)
    with pytest.raises(InputError, match="unique"):
        PassRateTable(["a", "a"])


def test_histogram_for_the_progress_bar():
    assert PassRateTable(IDS).histogram() == "-"
    # p_hat = 0 once, 1 once, 1/8..7/8 in the bins [0, .25) [.25, .5) [.5, .75) [.75, 1)
    assert measured_table().histogram() == "0:1 [1 2 2 2] 1:1"


# ------------------------------------------------------------------------- weights
@pytest.mark.parametrize("alpha,beta,estimator", [(1.0, 1.0, "plugin"), (1.0, 2.0, "plugin"),
                                                  (2.0, 2.0, "unbiased"),
                                                  (1.0, 1.0, "posterior"),
                                                  (0.5, 1.5, "posterior")])
def test_paced_weights_are_paced_theory_estimates(alpha, beta, estimator):
    t = measured_table()
    c = np.arange(9)
    cfg = WeightsSection(method="paced", alpha=alpha, beta=beta, estimator=estimator,
                         prior_a=2.0, prior_b=3.0)
    w = problem_weights(cfg, t, IDS)
    np.testing.assert_allclose(w, estimate_weight(c, 8, alpha, beta, estimator, (2.0, 3.0)))
    if estimator == "plugin":
        np.testing.assert_allclose(w, beta_kernel(c / 8, alpha, beta))
        assert w[0] == 0 and w[8] == 0 and (w[1:8] > 0).all()  # the boundaries drop out
    if estimator == "unbiased":  # C(c,2) C(8-c,2) / (C(8,4) C(4,2)), unbiased for p^2 (1-p)^2
        want = [comb(k, 2) * comb(8 - k, 2) / (comb(8, 4) * comb(4, 2)) for k in c]
        np.testing.assert_allclose(w, want)


def test_weights_call_the_kernels_not_a_copy(monkeypatch):
    """The trainer's weights go through paced_theory: a changed kernel changes them."""
    calls = []

    def spy(c, n, *a, **k):
        calls.append((np.asarray(c).tolist(), np.asarray(n).tolist()))
        return np.full(len(c), 0.25)

    monkeypatch.setattr(pr, "estimate_weight", spy)
    monkeypatch.setattr(pr, "hard_band", lambda p, lo, hi: np.full(len(p), 0.5))
    t = measured_table()
    assert problem_weights(WeightsSection(), t, IDS[:3]).tolist() == [0.25] * 3
    assert calls == [([0, 1, 2], [8, 8, 8])]
    assert problem_weights(WeightsSection(method="hard"), t, IDS[:2]).tolist() == [0.5] * 2


def test_hard_band_uniform_and_unmeasured_problems():
    t = measured_table()
    c = np.arange(9)
    hard = problem_weights(WeightsSection(method="hard", lo=0.2, hi=0.8), t, IDS)
    assert hard.tolist() == [float(0.2 < x / 8 < 0.8) for x in c]
    assert problem_weights(WeightsSection(method="uniform"), t, IDS).tolist() == [1.0] * 9
    fresh = PassRateTable(IDS)  # never measured: only uniform gives them weight
    for method, want in (("paced", 0.0), ("hard", 0.0), ("uniform", 1.0)):
        assert problem_weights(WeightsSection(method=method), fresh, IDS).tolist() == [want] * 9


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=12),
       st.floats(0.0, 3.0), st.floats(0.0, 3.0))
def test_plugin_weight_is_beta_kernel_of_p_hat(counts, alpha, beta):
    """With on-policy samples n differs per problem; w is still beta_kernel(c / n)."""
    ids = [str(i) for i in range(len(counts))]
    t = PassRateTable(ids)
    n = np.array([k for k, _ in counts])
    c = np.array([min(x, k) for k, x in counts])
    t.c[:], t.n[:] = c, n
    w = problem_weights(WeightsSection(alpha=alpha, beta=beta), t, ids)
    np.testing.assert_allclose(w, beta_kernel(c / n, alpha, beta), rtol=1e-12, atol=1e-300)


def test_normaliser_modes():
    w = np.array([0.25, 0.5, 0.125])
    assert normaliser(w, "sum", 32) == pytest.approx(0.875)
    assert normaliser(w, "mean", 32) == 32.0 and normaliser(w, "none", 32) == 1.0
    with pytest.raises(InputError, match="normalise"):
        normaliser(w, "max", 32)


def test_refresh_takes_per_problem_rollouts_and_records_shares():
    t = PassRateTable(["a", "b", "c", "d"])
    t.refresh(t.ids, [0, 1, 2, 8], [2, 8, 2, 8], step=0)
    assert t.rates().tolist() == [0.0, 0.125, 1.0, 1.0]
    assert t.shares(0) == pytest.approx({"zero": 0.25, "frontier": 0.25, "one": 0.5})
    with pytest.raises(InputError):
        t.refresh(t.ids, [0, 3, 0, 0], [2, 2, 2, 2], step=1)


def test_floor_weight_only_at_zero_successes():
    cfg = WeightsSection(floor=0.05)
    t = PassRateTable(["a", "b", "c", "d"])
    t.refresh(t.ids, [0, 1, 4, 8], 8, step=0)
    w = problem_weights(cfg, t, t.ids)
    assert w[0] == 0.05 and w[3] == 0.0  # hopeless keeps the floor, solved does not
    assert w[1] == pytest.approx(0.125 * 0.875) and w[2] == pytest.approx(0.25)
    w0 = problem_weights(WeightsSection(), t, t.ids)
    assert w0[0] == 0.0


@settings(max_examples=60, deadline=None)
@given(c0=st.integers(0, 8), outcomes=st.lists(st.booleans(), max_size=30),
       seed=st.integers(0, 2**32 - 1))
def test_window_counts_stay_valid_and_the_last_k_outcomes_decide_once_seen(c0, outcomes, seed):
    """For any sequence of on-policy outcomes after a refresh: 0 <= c <= n <= K always, and
    once K outcomes were added p_hat is exactly the mean of the last K of them."""
    t = PassRateTable(["a"])
    t.refresh(["a"], [c0], 8, step=0)
    rng = np.random.default_rng(seed)
    for i, x in enumerate(outcomes):
        t.add(["a"], [x], window=8, rng=rng)
        assert 0 <= t.c[0] <= t.n[0] <= 8
        if i >= 7:
            assert t.c[0] == sum(outcomes[i - 7:i + 1]) and t.n[0] == 8
