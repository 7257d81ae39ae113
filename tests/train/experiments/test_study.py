"""`paced study`: the grid, the tidy CSV, resuming, and the paired summaries."""

from __future__ import annotations

import os

import pytest

from paced_theory.stats import paired
from paced_train.cli import main
from paced_train.config import RunConfig, apply_overrides
from paced_train.experiments.study import (
    SIZES,
    arm_table,
    contrast_table,
    forward_arms,
    kernel_cells,
    read_csv,
)


@pytest.fixture(scope="module")
def quick_study(tiny_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    args = ["study", "configs/tiny.toml", "--size", "quick", "--jobs", "1", "--out", str(out),
            f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"']
    assert main(args) == 0
    return out, args


def test_quick_study_writes_a_row_per_run(quick_study):
    out, _ = quick_study
    rows = read_csv(out / "study.csv")
    q = SIZES["quick"]
    # forward: 7 arms per pool + the extra kernels on the kernel pool; reverse: 3 arms
    extra = sum((a, b) != (1.0, 1.0) for a, b in q.kernels)
    expected = (7 * len(q.pools) + extra + 3 * len(q.reverse_pools)) * q.seeds
    assert len(rows) == expected
    assert {r["loss"] for r in rows} == {"forward", "reverse"}
    assert {r["pool"] for r in rows} == set(q.pools)
    for r in rows:
        assert 0 <= r["hopeless_share"] <= 1 and os.path.isdir(r["run_dir"])
        assert r["hopeless_share"] + r["frontier_share"] + r["solved_share"] == pytest.approx(1)
    floor = [r for r in rows if r["arm"] == "floor"]
    assert floor and all(r["floor"] > 0 and r["weighting"] == "paced" for r in floor)
    assert all(r["rollout_flops_share"] == 0 for r in rows if r["arm"] == "uniform"
               and r["loss"] == "forward")
    for name in ("table.md", "phase.png", "kernel_map.png", "study.json"):
        assert (out / name).stat().st_size > 100


def test_study_summaries_are_paired_by_seed(quick_study):
    out, _ = quick_study
    rows = read_csv(out / "study.csv")
    table = arm_table(rows)
    for t in table:
        rs = sorted([r for r in rows if (r["pool"], r["loss"], r["arm"]) ==
                     (t["pool"], t["loss"], t["arm"])], key=lambda r: r["seed"])
        us = sorted([r for r in rows if (r["pool"], r["loss"], r["arm"]) ==
                     (t["pool"], t["loss"], "uniform")], key=lambda r: r["seed"])
        want = paired([r["auc"] for r in rs], [u["auc"] for u in us], kind="ratio")
        assert t["auc_ratio"]["mean"] == pytest.approx(want["mean"], nan_ok=True)
        assert t["auc_ratio"]["n"] == want["n"]
    cells = kernel_cells(table, SIZES["quick"].kernel_pool)
    assert set(cells) == set(SIZES["quick"].kernels)


def test_study_resumes_without_retraining(quick_study):
    out, args = quick_study
    rows = read_csv(out / "study.csv")
    kept = [r["run_dir"] for r in rows]
    stamps = {d: os.path.getmtime(os.path.join(d, "summary.json")) for d in kept}
    victim = kept[3]
    os.remove(os.path.join(victim, "summary.json"))  # as if killed before the end
    assert main(args) == 0
    for d in kept:
        if d == victim:
            assert os.path.exists(os.path.join(d, "summary.json"))
        else:  # finished runs are reused, not retrained
            assert os.path.getmtime(os.path.join(d, "summary.json")) == stamps[d]
    assert len(read_csv(out / "study.csv")) == len(rows)


def test_arm_table_on_known_numbers():
    def row(arm, seed, auc, final, reach, h=0.4):
        return {"pool": "p", "loss": "forward", "arm": arm, "seed": seed, "auc": auc,
                "final_acc": final, "compute_ratio_to_uniform": reach, "hopeless_share": h,
                "rollout_flops_share": 0.1 if arm != "uniform" else 0.0}

    rows = [row("uniform", 0, 0.5, 0.6, 1.0), row("uniform", 1, 0.4, 0.7, 1.0),
            row("paced", 0, 0.6, 0.7, 0.5), row("paced", 1, 0.6, 0.6, None)]
    t = {x["arm"]: x for x in arm_table(rows)}["paced"]
    assert t["auc_ratio"]["per_seed"] == pytest.approx([1.2, 1.5])
    assert t["auc_ratio"]["mean"] == pytest.approx(1.35)
    assert t["final_diff"]["per_seed"] == pytest.approx([0.1, -0.1])
    assert t["final_diff"]["verdict"] == "not significant"
    assert t["reached"] == 1 and t["compute_ratio"][0] == pytest.approx(0.5)
    assert t["hopeless_share"] == pytest.approx(0.4) and t["n"] == 2


def test_contrasts_pair_the_count_arms_with_paced_binomial():
    """floor and posterior are compared with paced-binomial seed by seed, in each pool."""
    def row(arm, seed, auc, final, pool="p"):
        return {"pool": pool, "loss": "forward", "arm": arm, "seed": seed, "auc": auc,
                "final_acc": final}

    rows = [row("paced-binomial", 0, 0.4, 0.2), row("paced-binomial", 1, 0.5, 0.3),
            row("floor", 1, 0.6, 0.6), row("floor", 0, 0.6, 0.5),  # out of seed order
            row("floor", 0, 0.9, 0.9, pool="q")]  # no paced-binomial in q: no contrast
    (c,) = contrast_table(rows)
    assert (c["pool"], c["arm"], c["against"], c["n"]) == ("p", "floor", "paced-binomial", 2)
    assert c["final_diff"]["per_seed"] == pytest.approx([0.3, 0.3])
    assert c["auc_ratio"]["per_seed"] == pytest.approx([1.5, 1.2])


def test_count_arms_read_counts_where_the_base_reads_exact_p():
    """The floor and the posterior act on counts: on an exact-P base they must switch to
    K-quantised pass rates (config validation refuses a floor on exact P)."""
    base = apply_overrides(RunConfig(), ["rollouts.source=likelihood",
                                         "rollouts.likelihood=exact"])
    arms = forward_arms([(1.0, 1.0)])
    for arm in ("paced-binomial", "floor", "posterior"):
        assert apply_overrides(base, arms[arm]).rollouts.likelihood == "binomial"
    assert apply_overrides(base, arms["paced"]).rollouts.likelihood == "exact"


def test_kernel_seeds_runs_the_grid_on_fewer_seeds_paired_with_those(tiny_models, tmp_path):
    """--kernel-seeds 1 of 2 seeds: the Beta arms have one row each, compared with uniform's
    seed 0 only; every other arm has both seeds."""
    out = tmp_path / "s"
    args = ["study", "configs/tiny.toml", "--size", "quick", "--seeds", "2", "--kernel-seeds",
            "1", "--jobs", "1", "--out", str(out), f'models.student="{tiny_models["student"]}"',
            f'models.teacher="{tiny_models["teacher"]}"']
    assert main(args) == 0
    rows = read_csv(out / "study.csv")
    beta = [r for r in rows if str(r["arm"]).startswith("beta")]
    assert beta and all(r["seed"] == 0 for r in beta)
    assert {r["seed"] for r in rows if r["arm"] == "paced"} == {0, 1}
    t = {(x["pool"], x["loss"], x["arm"]): x for x in arm_table(rows)}
    b = beta[0]
    u0 = next(r for r in rows if (r["pool"], r["loss"], r["arm"], r["seed"]) ==
              (b["pool"], "forward", "uniform", 0))
    cell = t[(b["pool"], "forward", b["arm"])]
    assert cell["n"] == 1  # paired with uniform's seed 0 alone (positional pairing would raise)
    assert cell["final_diff"]["per_seed"] == pytest.approx([b["final_acc"] - u0["final_acc"]])
