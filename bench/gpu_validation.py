"""GPU validation run: pretrain the large teacher and student from scratch, then `paced
compare` (uniform, hard, AKL, PACED, two-stage; 2 seeds, equal FLOPs) and `paced snr-probe`
on them, with the wall time of every phase and the device recorded.

    python bench/gpu_validation.py              # CUDA, configs/large.toml, ~10 min on an H100
    python bench/gpu_validation.py --reduced    # tiny sizes on CPU (what the tests run)

Writes OUT/teacher.safetensors, OUT/student.safetensors, OUT/compare/, OUT/snr/ and the
report OUT/gpu_validation.md (default OUT: runs/large; the tests use a temporary directory).
A run on a GPU should be copied to bench/results/gpu_validation.md with its device line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paced_train.config import load_config  # noqa: E402
from paced_train.experiments.compare import compare  # noqa: E402
from paced_train.experiments.pretrain import RECIPES, pretrain  # noqa: E402
from paced_train.experiments.snr_probe import run_probe  # noqa: E402

METHODS = ["uniform", "hard", "akl", "paced", "two-stage"]
# --reduced: the same pipeline at a size a CPU runs in well under a minute
REDUCED_RECIPE = {"n_layer": 1, "n_head": 2, "n_embd": 32, "steps": 40, "batch_size": 32}
REDUCED_OVERRIDES = ["data.add_digits=[1,2]", "data.mul_digits=[1]", "data.n_train_per_cell=8",
                     "data.n_eval_per_cell=4", "data.n_retention=8", "optim.batch_size=8",
                     "budget.steps=4", "eval.every=2", "rollouts.refresh_every=2",
                     "rollouts.chunk=16", "probe.n_problems=16", "probe.sketch_dim=64",
                     "probe.n_boot=10", "probe.min_per_bin=2", "run.progress=false",
                     "run.device=cpu"]


def device_line() -> str:
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"CPU ({torch.get_num_threads()} threads), torch {torch.__version__}"


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/large")
    ap.add_argument("--config", default=str(ROOT / "configs" / "large.toml"))
    ap.add_argument("--reduced", action="store_true", help="tiny sizes on CPU (for tests)")
    ap.add_argument("--seeds", type=int, default=None, help="default 2 (1 with --reduced)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cpu" if args.reduced else ("cuda" if torch.cuda.is_available() else "cpu")
    seeds = args.seeds or (1 if args.reduced else 2)
    times: dict[str, float] = {}
    metas = {}
    for role in ("teacher", "student"):
        recipe = RECIPES[f"{role}-large"]
        if args.reduced:
            recipe = dataclasses.replace(recipe, **REDUCED_RECIPE)
        t0 = time.time()
        metas[role] = pretrain(f"{role}-large", out / f"{role}.safetensors", recipe=recipe,
                               progress=not args.reduced, device=device)
        times[f"pretrain {role}"] = time.time() - t0
    overrides = [f'models.student="{out / "student.safetensors"}"',
                 f'models.teacher="{out / "teacher.safetensors"}"',
                 *(REDUCED_OVERRIDES if args.reduced else [f"run.device={device}"])]
    cfg = load_config(args.config, overrides)
    t0 = time.time()
    result = compare(cfg, METHODS, seeds, out / "compare")
    times["compare"] = time.time() - t0
    t0 = time.time()
    probe = run_probe(cfg, out / "snr", progress=not args.reduced)
    times["snr-probe"] = time.time() - t0
    report = out / "gpu_validation.md"
    lines = [f"# GPU validation ({'reduced, CPU' if args.reduced else 'full'})", "",
             f"device: {device_line()}", f"command: python bench/gpu_validation.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}", "",
             "| phase | wall s |", "|---|---|",
             *[f"| {k} | {v:.1f} |" for k, v in times.items()],
             f"| total | {sum(times.values()):.1f} |", "",
             "## Models", "", "| model | parameters | final pretrain loss |", "|---|---|---|",
             *[f"| {r}-large | {m['n_params']:,} | {m['final_loss']:.3f} |"
               for r, m in metas.items()], "",
             "## Comparison (equal FLOPs)", "", (out / "compare" / "comparison.md").read_text(),
             "", "## SNR probe", "", f"pass-rate counts c=0..K: {probe['pass_rate_counts']}",
             "", "| p | n | SNR | 95% interval |", "|---|---|---|---|",
             *[f"| {b['p']:.3f} | {b['n']} | {b['snr']:.4g} | [{b['lo']:.4g}, {b['hi']:.4g}] |"
               for b in probe["bins"]]]
    report.write_text("\n".join(lines) + "\n")
    (out / "gpu_validation.json").write_text(json.dumps(
        {"device": device_line(), "times_s": times, "comparison": result,
         "probe_bins": probe["bins"]}, indent=2, default=float))
    print(report.read_text())
    return report


if __name__ == "__main__":
    main()
