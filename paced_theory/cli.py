"""Theory subcommands of `paced`: `theory snr`, `theory robustness`, `fit`, `simulate`.

The JSON keys printed here are a contract used by other tools (see README, "Command line");
rename nothing without bumping it there. Every handler validates its arguments and raises
InputError with one line naming the flag, which `paced` prints and exits 2 on.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from paced_theory.errors import InputError
from paced_theory.jsonable import strict_json


def _emit(payload: dict, as_json: bool, text: str) -> None:
    if as_json:  # strict JSON: NaN and infinities are printed as null, never bare
        print(json.dumps(strict_json(payload), indent=2, allow_nan=False))
    else:
        print(text)


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _parse_mu(spec: str):
    """`uniform` or `beta:A,B` -> a PassRateMeasure on a quadrature grid."""
    from paced_theory.efficiency import PassRateMeasure

    if spec == "uniform":
        return PassRateMeasure.uniform()
    if spec.startswith("beta:"):
        try:
            a, b = (float(t) for t in spec[5:].split(","))
        except ValueError:
            raise InputError(f"--mu {spec!r}: expected 'beta:A,B' with two numbers") from None
        if a <= 0 or b <= 0:
            raise InputError(f"--mu {spec!r}: Beta parameters must be > 0")
        return PassRateMeasure.beta(a, b)
    raise InputError(f"--mu {spec!r}: expected 'uniform' or 'beta:A,B'")


# ---------------------------------------------------------------- theory snr
def _cmd_snr(args: argparse.Namespace) -> int:
    from paced_theory.efficiency import efficiency
    from paced_theory.fit import chebyshev_beta
    from paced_theory.kernels import beta_kernel
    from paced_theory.models import MODELS

    # the models' ranges (paced_theory.models), checked here to name the flag
    if not 1 <= args.K <= 10**6:
        raise InputError(f"--K must be an integer in [1, 1e6] (got {args.K})")
    lo = 1e-8
    for flag in ("sigma2", "tau2", "noise_floor", "gamma", "Delta", "kappa"):
        v, hi = getattr(args, flag), 50.0 if flag == "gamma" else 1e8
        zero_ok = flag not in ("Delta", "kappa")
        if not ((zero_ok and v == 0) or lo <= v <= hi):
            rng = f"0 or a number in [{lo:g}, {hi:g}]" if zero_ok else f"in [{lo:g}, {hi:g}]"
            raise InputError(f"--{flag.replace('_', '-')} must be {rng} (got {v})")
    if args.model == "m1":
        model = MODELS["m1"](K=args.K, sigma2=args.sigma2, tau2=args.tau2, Delta=args.Delta,
                             baseline=args.baseline)
    else:
        model = MODELS["m2"](gamma=args.gamma, noise_floor=args.noise_floor, kappa=args.kappa,
                             sigma2=args.sigma2)
    mu = _parse_mu(args.mu)
    a, b = model.exponents(args.criterion)
    alpha, beta = model.implied_beta(args.criterion)

    def eff(w) -> float:
        if args.criterion == "allocation":
            return efficiency(w, mu, rho=model.rho, criterion="allocation")
        return efficiency(w, mu, s=model.s, v=model.v, criterion="progress")

    default_eff = eff(lambda p: beta_kernel(p, 1.0, 1.0))
    implied_eff = eff(lambda p: beta_kernel(p, alpha, beta))
    cheb = chebyshev_beta(model.rho)
    cheb_eff = eff(lambda p: beta_kernel(p, cheb["alpha"], cheb["beta"]))
    payload = {
        "model": model.name,
        "params": model.params,
        "criterion": args.criterion,
        "mu": args.mu,
        "rho": model.rho_text(),
        "exponents": [a, b],
        "beta_kernel": {"alpha": alpha, "beta": beta},
        "efficiency": {"p(1-p)": default_eff, "implied_beta": implied_eff,
                       "chebyshev_beta": cheb_eff},
        "chebyshev_beta": cheb,
    }
    text = "\n".join([
        f"model       {model.name}  {model.params}",
        f"rho(p)      {model.rho_text()}",
        f"exponents   p->0: {a}   p->1: {b}   ({args.criterion} criterion)",
        f"Beta kernel alpha={alpha}  beta={beta}",
        f"efficiency  p(1-p): {default_eff:.4f}   implied Beta: {implied_eff:.4f}   "
        f"(mu={args.mu})",
        f"Chebyshev fit of log rho on [0.01, 0.99]: alpha={cheb['alpha']:.3f} "
        f"beta={cheb['beta']:.3f}  efficiency {cheb_eff:.4f}",
    ])
    _emit(payload, args.json, text)
    return 0


# ---------------------------------------------------------- theory robustness
def _cmd_robustness(args: argparse.Namespace) -> int:
    from paced_theory import robustness as rb

    d = args.delta
    if not math.isfinite(d) or d < 0:
        raise InputError(f"--delta must be a finite number >= 0 (got {d})")
    if not args.log and d >= 1:
        raise InputError(f"--delta must be < 1 for the band [1-delta, 1+delta] (got {d}); "
                         "use --log for the band [e^-delta, e^delta]")
    loss = rb.worst_case_loss(d, log=args.log)
    lo, hi = (math.exp(-d), math.exp(d)) if args.log else (1 - d, 1 + d)
    bound = 1.0 - rb.kantorovich_bound(lo, hi)
    wit = rb.witness(d, log=args.log)
    payload = {
        "delta": d,
        "band": "log" if args.log else "linear",
        "m_range": [lo, hi],
        "worst_case_loss": loss,
        "bound": bound,
        "efficiency_lower_bound": 1.0 - bound,
        "witness": wit,
        "formula": "tanh(delta)^2" if args.log else "delta^2",
    }
    band = f"[e^-{d:g}, e^{d:g}]" if args.log else f"[1-{d:g}, 1+{d:g}]"
    text = "\n".join([
        f"misspecification m(p) in {band}",
        f"worst-case efficiency loss  {loss:.6g}   ({payload['formula']})",
        f"Kantorovich bound on loss   {bound:.6g}",
        f"witness: m = {wit['values']} with nu-mass {wit['masses']} -> loss {wit['loss']:.6g}",
    ])
    _emit(payload, args.json, text)
    return 0


# ------------------------------------------------------------------------ fit
def _cmd_fit(args: argparse.Namespace) -> int:
    from paced_theory.fit import fit_families, read_snr_csv

    if not 0 <= args.n_boot <= 10**5:
        raise InputError(f"--n-boot must be an integer in [0, 100000] (got {args.n_boot})")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {args.seed})")
    curve = read_snr_csv(Path(args.file))
    families = tuple(f.strip() for f in args.families.split(",") if f.strip())
    results = fit_families(curve, families=families, n_boot=args.n_boot, seed=args.seed)
    payload = {"file": str(args.file), "n_points": int(len(curve.p)), "families": {}}
    lines = [f"{'family':<14} {'efficiency':>10} {'guaranteed':>10} {'osc':>8} {'AIC':>9}  params"]
    for name, r in results.items():
        payload["families"][name] = {
            "params": r.params,
            "efficiency": r.efficiency,
            "guaranteed_efficiency": r.guaranteed_efficiency,
            "residual_oscillation": _finite_or_none(r.residual_oscillation),
            "aic": _finite_or_none(r.aic),
            "intervals": {k: list(v) for k, v in r.intervals.items()},
        }
        ps = ", ".join(f"{k}={v:.3g}" for k, v in r.params.items())
        lines.append(f"{name:<14} {r.efficiency:>10.4f} {r.guaranteed_efficiency:>10.4f} "
                     f"{r.residual_oscillation:>8.3g} {r.aic:>9.3g}  {ps}")
    _emit(payload, args.json, "\n".join(lines))
    return 0


# ------------------------------------------------------------------- simulate
def _git_commit() -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cmd_predict(args: argparse.Namespace) -> int:
    """--calibrate CURVES / --params FILE with --pools FILE: the cell simulator's predictions."""
    from paced_theory import predict as pr
    from paced_theory.cellsim import Params

    if not args.pools:
        raise InputError("simulate: --calibrate/--params need --pools FILE (a pools TOML file)")
    pools = pr.read_pools(args.pools)
    if args.params and not args.calibrate:
        try:
            params = Params.from_dict(json.loads(Path(args.params).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{args.params}: cannot read calibrated parameters ({e})") from None
        source = args.params
    else:
        params, info = pr.fit(args.calibrate, args.pools, initial_path=args.initial)
        source = args.calibrate
        print(f"calibrated on {args.calibrate}: rmse {info['rmse']:.4f} over "
              f"{info['residuals']} residuals ({info['nfev']} evaluations)")
        if args.params:
            Path(args.params).write_text(json.dumps(strict_json(params.to_dict()), indent=1))
            print(f"wrote {args.params}")
    rows = pr.predict(params, pools)
    commit = args.commit or _git_commit()
    out = args.out or "predictions.csv"
    pr.write_predictions(rows, out, commit, source)
    lines = ["| pool | loss | arm | stale | fresh | exact |", "|---|---|---|---|---|---|"]
    table: dict = {}
    for r in rows:
        table.setdefault((r["pool"], r["loss"], r["arm"]), {})[r["scenario"]] = r["auc_ratio"]
    for (pool, loss, arm), v in table.items():
        lines.append(f"| {pool} | {loss} | {arm} | " + " | ".join(
            f"{v.get(s, float('nan')):.3f}" for s in ("stale", "fresh", "exact")) + " |")
    _emit({"commit": commit, "params": params.to_dict(), "rows": rows}, args.json,
          "predicted AUC ratio to uniform (cell simulator)\n" + "\n".join(lines)
          + f"\nwrote {out} (commit {commit[:10]})")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from paced_theory import population as pop

    if args.calibrate or args.params:
        return _cmd_predict(args)

    if not 1 <= args.seeds <= 10**4:
        raise InputError(f"--seeds must be an integer in [1, 10000] (got {args.seeds})")
    overrides = {"n_problems": args.problems, "steps": args.steps, "K": args.K}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = pop.from_overrides(overrides)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows = pop.compare(config, methods, seeds=args.seeds)
    _emit({"config": pop.config_dict(config), "rows": rows}, args.json, pop.format_table(rows))
    return 0


# ------------------------------------------------------------------- register
def register(sub: argparse._SubParsersAction) -> None:
    """Add the theory subcommands to the `paced` parser."""
    theory = sub.add_parser("theory", help="derive SNR and robustness results")
    tsub = theory.add_subparsers(dest="theory_command", required=True, metavar="THEORY_COMMAND")

    snr = tsub.add_parser("snr", help="SNR(p) of a gradient model, its exponents and Beta kernel")
    snr.add_argument("--model", choices=["m1", "m2"], default="m1")
    snr.add_argument("--K", type=int, default=8, help="rollouts per problem (m1)")
    snr.add_argument("--sigma2", type=float, default=1.0, help="isotropic noise E||zeta||^2")
    snr.add_argument("--tau2", type=float, default=0.0, help="advantage noise variance (m1)")
    snr.add_argument("--Delta", type=float, default=1.0, help="reward scale (m1)")
    snr.add_argument("--baseline", default="true_mean",
                     choices=["true_mean", "leave_one_out", "group_mean"], help="(m1)")
    snr.add_argument("--gamma", type=float, default=1.0, help="engagement exponent (m2)")
    snr.add_argument("--noise-floor", dest="noise_floor", type=float, default=0.1,
                     help="token-level noise floor nu (m2)")
    snr.add_argument("--kappa", type=float, default=1.0, help="coherent gradient scale (m2)")
    snr.add_argument("--criterion", choices=["allocation", "progress"], default="allocation",
                     help="w* proportional to rho (allocation) or to s/v (progress)")
    snr.add_argument("--mu", default="uniform", help="pass-rate distribution: uniform | beta:A,B")
    snr.add_argument("--json", action="store_true")
    snr.set_defaults(func=_cmd_snr)

    rob = tsub.add_parser("robustness", help="worst-case efficiency loss under misspecification")
    rob.add_argument("--delta", type=float, required=True)
    rob.add_argument("--log", action="store_true", help="band [e^-delta, e^delta]")
    rob.add_argument("--json", action="store_true")
    rob.set_defaults(func=_cmd_robustness)

    fit = sub.add_parser("fit", help="fit kernel families to a measured SNR curve (CSV p,snr)")
    fit.add_argument("file", help="CSV with columns p,snr and optionally count or se")
    fit.add_argument("--families",
                     default="beta_ls,beta_linf,hard,gaussian,kumaraswamy,sqrt_variance,uniform",
                     help="comma-separated kernel families, from: beta_ls, beta_linf, beta_eff, "
                     "hard, gaussian, kumaraswamy, sqrt_variance, uniform (docs/theory.md §7)")
    fit.add_argument("--n-boot", dest="n_boot", type=int, default=200)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--json", action="store_true")
    fit.set_defaults(func=_cmd_fit)

    sim = sub.add_parser("simulate", help="population (item-response) simulator comparison")
    sim.add_argument("--problems", type=int, default=None)
    sim.add_argument("--steps", type=int, default=None)
    sim.add_argument("--K", type=int, default=None)
    sim.add_argument("--methods", default="uniform,hard,beta,oracle",
                     help="comma-separated, from: uniform, hard, beta (p(1-p) from c/K), "
                     "beta:A,B (exponents A, B), beta+floor:A,B,EPS (weight at least EPS at "
                     "c = 0), oracle (rho of the true p)")
    sim.add_argument("--seeds", type=int, default=3)
    sim.add_argument("--calibrate", metavar="CURVES", default=None,
                     help="instead of the item simulator: fit the cell simulator "
                     "(paced_theory/cellsim.py) to the per-cell curves of UNIFORM runs in this "
                     "CSV (bench/calibration_runs.py writes it), then predict every arm's AUC "
                     "ratio to uniform on every pool of --pools")
    sim.add_argument("--params", metavar="JSON", default=None,
                     help="with --calibrate: write the fitted parameters here; without: read "
                     "them from here and predict without fitting (seconds)")
    sim.add_argument("--initial", metavar="CSV", default=None,
                     help="with --calibrate: the student's per-cell pass rates at the start "
                     "(bench/initial_passrates.py), fitted too: they pin the pass-rate scale")
    sim.add_argument("--pools", metavar="FILE", default=None,
                     help="pools TOML file (the format of `paced study --pools`)")
    sim.add_argument("--out", default=None, help="predictions CSV (default predictions.csv), "
                     "each row stamped with the git commit")
    sim.add_argument("--commit", default=None, help="commit to record (default: git HEAD)")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=_cmd_simulate)
