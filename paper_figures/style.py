"""Shared figure style: readable at paper column width, the colour-blind-safe Okabe-Ito
palette, labelled axes; every figure is saved as PNG + PDF next to the CSV it plotted.

Tracked outputs are not rewritten with float noise: write_text (and so save's CSV, table 9,
figure 10's JSON) keeps an existing file whose text differs from the new one only in numbers
that agree to REL_TOL relative (1e-12 absolute near 0), e.g. last digits that another CPU's
or BLAS's reduction order changes; save keeps an existing PNG whose pixels differ from the new
one's in at most 0.1 % of them and by at most 4/255 (the anti-aliasing of a curve moved by
float noise: 16 pixels by 2/255 in figure 3 on another CPU; a change of style or data moves
far more). A real change rewrites the file."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
# Okabe-Ito, with the yellow (hard to read on white) moved last
OKABE_ITO = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7",
             "#F0E442"]
COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
REL_TOL = 1e-9  # numbers that agree this closely are the same number (module docstring)
_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")

plt.rcParams.update({
    "figure.dpi": 150, "savefig.dpi": 200, "font.size": 8, "axes.titlesize": 8,
    "axes.labelsize": 8, "legend.fontsize": 6.5, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "axes.prop_cycle": matplotlib.cycler(color=OKABE_ITO), "axes.spines.top": False,
    "axes.spines.right": False, "lines.linewidth": 1.2, "svg.hashsalt": "paced",
    "pdf.fonttype": 42,
})


def same_up_to_float_noise(old: str, new: str, rel: float = REL_TOL) -> bool:
    """True when old and new are the same text except numbers that agree to `rel`
    relative (1e-12 absolute): split at numbers, the rest must match exactly."""
    a, b = _NUMBER.split(old), _NUMBER.split(new)
    if len(a) != len(b):
        return False
    for i, (x, y) in enumerate(zip(a, b)):
        if i % 2 == 0:  # text between numbers
            if x != y:
                return False
        elif x != y and not math.isclose(float(x), float(y), rel_tol=rel, abs_tol=1e-12):
            return False
    return True


def write_text(path: Path, text: str) -> bool:
    """Write text to path unless the file there already says the same up to float noise
    (same_up_to_float_noise); returns whether it wrote."""
    path = Path(path)
    if path.is_file() and same_up_to_float_noise(path.read_bytes().decode(errors="replace"), text):
        return False
    path.write_bytes(text.encode())  # as given: no newline translation
    return True


def write_csv(path: Path, rows: list[dict], lineterminator: str = "\r\n") -> bool:
    """rows as CSV (header from the first row; the csv module's line ends unless told)
    through write_text."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator=lineterminator)
    w.writeheader()
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def same_picture(old: bytes, new: bytes) -> bool:
    """True when two PNGs differ only by anti-aliasing noise (module docstring)."""
    import matplotlib.image as mpimg
    import numpy as np

    try:
        a, b = mpimg.imread(io.BytesIO(old)), mpimg.imread(io.BytesIO(new))
    except (OSError, ValueError, SyntaxError):
        return False
    if a.shape != b.shape:
        return False
    d = np.abs(a.astype(float) - b.astype(float)).max(axis=-1) if a.ndim == 3 else \
        np.abs(a.astype(float) - b.astype(float))
    return float((d > 0).mean()) <= 1e-3 and float(d.max()) <= 4 / 255 + 1e-9


def figure(width: float = COLUMN_WIDTH, height: float = 2.3, ncols: int = 1):
    return plt.subplots(1, ncols, figsize=(width, height))


def save(fig, name: str, rows: list[dict], out: Path | None = None) -> Path:
    """Write NAME.png, NAME.pdf (deterministic metadata) and NAME.csv into `out` (default
    the module's OUT, read at call time so that tests can redirect it); return the PNG."""
    out = Path(out) if out is not None else OUT
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    png = out / f"{name}.png"
    if not (png.is_file() and same_picture(png.read_bytes(), buf.getvalue())):
        png.write_bytes(buf.getvalue())
    fig.savefig(out / f"{name}.pdf", metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)
    if rows:
        write_csv(out / f"{name}.csv", rows)
    return out / f"{name}.png"
