"""Does the kernel fitted to VALUE rank the study's kernel map better than the one fitted to
SNR? (issue 18, deliverable 3; docs/theory.md §10.7)

Reads a value probe's value.json (`paced value-probe`, which fits Beta kernels to both the
value curve and the SNR curve of the same pool) and a study.csv (`paced study`), and prints,
for each prediction (the value- and SNR-fitted beta_ls and beta_eff kernels, and the two
measured curves themselves), the nine Beta kernels' predicted efficiencies beside their
measured mean AUC ratio to uniform, Spearman's rho with a 95 % paired bootstrap over seeds,
and value - SNR for the same family on the same resamples (paced_theory.kernel_rank).

    PYTHONPATH=$PWD python bench/value_vs_snr.py \
        [--probe bench/results/value_probe/value.json] [--study bench/results/study/study.csv] \
        [--pool demo] [--n-boot 10000] [--out bench/results/value_probe/ranking]

Seconds. --out PREFIX writes PREFIX.json and PREFIX.md (the printed table, with the command).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from paced_theory.jsonable import strict_json
from paced_theory.kernel_rank import kernel_map_ranking, ranking_table

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--probe", default=str(ROOT / "bench/results/value_probe/value.json"))
    ap.add_argument("--study", default=str(ROOT / "bench/results/study/study.csv"))
    ap.add_argument("--pool", default="demo")
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = ap.parse_args(argv)
    probe = json.loads(Path(args.probe).read_text())
    rank = kernel_map_ranking(probe, args.study, args.pool, n_boot=args.n_boot, seed=args.seed)
    text = ranking_table(rank)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(strict_json(rank), indent=2,
                                                       allow_nan=False))
        cmd = shlex.join(["python", "bench/value_vs_snr.py", *(argv if argv is not None
                                                                 else sys.argv[1:])])
        out.with_suffix(".md").write_text(f"`PYTHONPATH=$PWD {cmd}`\n\nprobe: {args.probe}\n\n"
                                          f"```\n{text}\n```\n")
        print(f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
