"""Wall time of the population simulator (M3) per method and size. Prints a table; no asserts.

    python bench/population_bench.py
"""

from __future__ import annotations

import time

from paced_theory.population import PopulationConfig, simulate


def main() -> None:
    print("| problems | steps | batch | method | seconds |")
    print("|---|---|---|---|---|")
    for n, steps, batch in [(10_000, 1_000, 256), (10_000, 1_000, 10_000)]:
        cfg = PopulationConfig(n_problems=n, steps=steps, batch_size=batch)
        for method in ["uniform", "beta", "oracle"]:
            t = time.perf_counter()
            simulate(cfg, method, seed=0)
            print(f"| {n} | {steps} | {batch} | {method} | {time.perf_counter() - t:.2f} |")


if __name__ == "__main__":
    main()
