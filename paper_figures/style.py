"""Shared figure style: readable at paper column width, the colour-blind-safe Okabe-Ito
palette, labelled axes; every figure is saved as PNG + PDF next to the CSV it plotted."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
# Okabe-Ito, with the yellow (hard to read on white) moved last
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7",
             "#F0E442"]
COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper

plt.rcParams.update({
    "figure.dpi": 150, "savefig.dpi": 200, "font.size": 8, "axes.titlesize": 8,
    "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO), "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.2, "svg.hashsalt": "paced",
    "pdf.fonttype": 42,
})


def figure(width: float = COLUMN_WIDTH, height: float = 2.3, ncols: int = 1):
    return plt.subplots(1, ncols, figsize=(width, height))


def save(fig, name: str, rows: list[dict], out: Path | None = None) -> Path:
    """Write NAME.png, NAME.pdf (deterministic metadata) and NAME.csv into `out` (default
    the module's OUT, read at call time so that tests can redirect it); return the PNG."""
    out = Path(out) if out is not None else OUT
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", metadata={"Software": None})
    fig.savefig(out / f"{name}.pdf", metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
    if rows:
        with open(out / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return out / f"{name}.png"
