"""Throughput of the training loop's two halves for the shipped models, and the share of
training wall time spent in rollouts. Prints markdown tables; asserts nothing.

    python bench/loop_bench.py [--steps 60]

Rollout: batched KV-cache sampling, K = 8 completions per problem, temperature 1.
Distillation step: teacher forward + student forward/backward + AdamW step, forward KL on
teacher references, batch 32. Tokens = prompt + completion tokens processed.
Rollout share: a short run of the demo config with Paced weights (refresh every 25 steps).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from paced_train.config import load_config
from paced_train.experiments.demo import demo_config_path
from paced_train.loop import losses
from paced_train.loop.batching import pack
from paced_train.loop.rollouts import generate_and_verify
from paced_train.loop.trainer import train
from paced_train.models.model import load_model, shipped_path
from paced_train.tasks import arithmetic_suite


def timed(fn, repeat=3):
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def bench_device(device: str) -> list[str]:
    student, tok, _ = load_model(shipped_path("student"), device)
    teacher, _, _ = load_model(shipped_path("teacher"), device)
    probs = arithmetic_suite(0, 16)  # 7 cells x 16 = 112 problems
    rows = []
    gen = torch.Generator().manual_seed(0)
    for name, model in (("student", student), ("teacher", teacher)):
        sec, (_, _, tokens) = timed(lambda m=model: generate_and_verify(
            m, tok, probs, 7, k=8, temperature=1.0, generator=gen))
        rows.append(f"| {device} | rollout K=8 ({name}) | {len(probs) * 8} seqs | "
                    f"{tokens / sec:,.0f} tok/s | {sec * 1e3:.0f} ms |")
    batch = probs[:32]
    _, refs, _ = generate_and_verify(teacher, tok, batch, 7, temperature=0.0)
    x, _, mask = pack([tok.encode_prompt(p.prompt) for p in batch], refs, tok.pad_id, device)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    n_tok = int((x != tok.pad_id).sum())

    def step():
        with torch.no_grad():
            t = teacher(x)
        loss = losses.token_kl(student(x), t, mask).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    sec, _ = timed(step, repeat=10)
    rows.append(f"| {device} | distillation step (B=32) | {x.shape[0]} seqs | "
                f"{n_tok / sec:,.0f} tok/s | {sec * 1e3:.1f} ms |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    if not shipped_path("student").exists():
        raise SystemExit("shipped weights missing: run `paced pretrain teacher` and `student`")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| device | phase | work | throughput | time |")
    print("|---|---|---|---|---|")
    for d in devices:
        for row in bench_device(d):
            print(row)
    cfg = load_config(demo_config_path(), [f"budget.steps={args.steps}", "run.progress=false",
                                           "weights.method=paced", "eval.every=1000"])
    with tempfile.TemporaryDirectory() as tmp:
        s = train(cfg, Path(tmp) / "run")
    t = s["timers_s"]
    print()
    print(f"Demo config, Paced, {s['steps']} steps, K = {cfg.rollouts.K}, refresh every "
          f"{cfg.rollouts.refresh_every} steps:")
    print("| rollout s | teacher s | student s | eval s | total s | rollout share of training |")
    print("|---|---|---|---|---|---|")
    print(f"| {t['rollout']:.1f} | {t['teacher']:.1f} | {t['student']:.1f} | {t['eval']:.1f} | "
          f"{s['wall_s']:.1f} | {s['rollout_share']:.0%} |")


if __name__ == "__main__":
    main()
