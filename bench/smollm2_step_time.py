"""What each affordability choice of issue 20 costs on SmolLM2-135M-Instruct: seconds per
training step and per pass-rate refresh of the pool, FLOPs (the ledger's), and memory, at the
comparison's batch size and completion length (configs/smollm2/verdict.toml).

    PYTHONPATH=$PWD python bench/smollm2_step_time.py [--choices all,top:2,top:6,lora:8]
        [--rounds 2] [--refresh-problems 16] [--eval-problems 0] [--out DIR]

Choices ([trainable] of the config): "all" (every parameter), "top:N" (the top N blocks and
the final norm), "lora:R" (LoRA rank R on every attention and MLP projection, via peft).
The model is loaded once; each choice gets its own copy of the student (the frozen "self"
teacher is shared: it is the same initial model for every choice) and its own AdamW.

Timing: the loop's own distill_step (reverse KL: one on-policy sample per problem, teacher
logits on the privileged prompt, student forward + backward + AdamW) on batch_size problems,
and the loop's own refresh_pass_rates (K rollouts of max_new_tokens) on --refresh-problems
problems, scaled to the whole training pool. The choices are interleaved (round r runs every
choice once, in a rotated order), so a change in the machine's load hits every choice alike;
the table reports the median over rounds. Times on a shared machine are inflated: compare
the rows with each other, not with another machine. Speed is never asserted.

Memory, per choice (exact, from the tensors, not the process): weights (all, frozen ones
included), gradients and AdamW moments (trainable parameters only), and the activations
autograd saves for the backward of one training step (a saved_tensors_hooks count of the
distinct storages, the part that freezing the lower blocks removes). The process's peak RSS
is printed once (it is the maximum over every choice).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paced_train.config import apply_overrides, load_config  # noqa: E402
from paced_train.loop.distill import n_params  # noqa: E402
from paced_train.loop.ledger import Ledger  # noqa: E402
from paced_train.loop.passrates import PassRateTable  # noqa: E402
from paced_train.loop.rollouts import refresh_pass_rates  # noqa: E402
from paced_train.loop.state import Run, State  # noqa: E402
from paced_train.loop.trainer import distill_step, setup  # noqa: E402
from paced_train.models import adapters  # noqa: E402

CONFIG = ROOT / "configs" / "smollm2" / "verdict.toml"


def choice_overrides(choice: str) -> list[str]:
    """'all' | 'top:N' | 'lora:R' -> [trainable] overrides."""
    kind, _, arg = choice.partition(":")
    if kind == "all":
        return ["trainable.mode=all"]
    if kind == "top":
        return ["trainable.mode=top", f"trainable.top_blocks={int(arg)}"]
    if kind == "lora":
        return ["trainable.mode=lora", f"trainable.lora_rank={int(arg)}",
                f"trainable.lora_alpha={2 * int(arg)}"]
    raise SystemExit(f"unknown choice {choice!r}: use all, top:N or lora:R")


def build(base: Run, choice: str) -> tuple[Run, State]:
    """A Run for one choice: a copy of the initial student, configured, with its AdamW; the
    teacher, tokenizer and problems shared."""
    cfg = apply_overrides(base.cfg, choice_overrides(choice))
    student = copy.deepcopy(base.teacher).requires_grad_(True)  # the initial model
    adapters.configure(student, cfg.trainable, cfg.run.seed)
    student.train()
    opt = torch.optim.AdamW(adapters.trainable_parameters(student), lr=cfg.optim.lr,
                            weight_decay=cfg.optim.weight_decay)
    run = Run(cfg, base.device, student, base.teacher, base.tok, opt, base.train_set,
              base.heldout, base.retention, student, base.dist)
    rate = 0.0 if cfg.trainable.mode == "all" else \
        adapters.backward_flops_per_token(student, n_params(student))
    st = State(step=0, table=PassRateTable([p.id for p in base.train_set]),
               ledger=Ledger(n_params(student), n_params(base.teacher), bwd_per_token=rate))
    return run, st


def saved_bytes(fn) -> tuple[object, int]:
    """(fn(), bytes of the distinct storages autograd saved for backward during fn)."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def one_step(run: Run, st: State, batch) -> dict:
    """One distill_step on `batch` (weights 1): wall time, the phases' times, FLOPs."""
    before, timers = st.ledger.flops, dict(st.timers)
    st.step += 1
    t0 = time.perf_counter()
    row, act = saved_bytes(lambda: distill_step(run, st, batch, np.ones(len(batch)),
                                                float(len(batch))))
    wall = time.perf_counter() - t0
    return {"wall": wall, "flops": st.ledger.flops - before, "activations": act,
            "loss": row["loss"],
            **{k: st.timers[k] - timers[k] for k in ("sample", "teacher", "student")}}


def one_refresh(run: Run, st: State, rows: np.ndarray) -> dict:
    before = st.ledger.flops
    t0 = time.perf_counter()
    refresh_pass_rates(run, st, rows)
    return {"wall": time.perf_counter() - t0, "flops": st.ledger.flops - before}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--choices", default="all,top:2,top:6,lora:8")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--refresh-problems", type=int, default=16,
                    help="problems per timed refresh (scaled to the whole training pool)")
    ap.add_argument("--eval-problems", type=int, default=0,
                    help="> 0: also time evaluate() on this many held-out problems, scaled")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="", help="directory for step_time.json / step_time.md")
    ap.add_argument("overrides", nargs="*", help="section.key=value for the config")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = load_config(a.config, ["run.progress=false", "trainable.mode=all", *a.overrides])
    t0 = time.perf_counter()
    base, _ = setup(cfg)
    t_load = time.perf_counter() - t0
    choices = [c.strip() for c in a.choices.split(",") if c.strip()]
    runs = {c: build(base, c) for c in choices}
    del base.student, base.opt  # setup's own student and optimizer are not timed
    B = cfg.optim.batch_size
    n_pool = len(base.train_set)
    rows_refresh = np.arange(min(a.refresh_problems, n_pool))
    res: dict[str, dict[str, list]] = {c: {"step": [], "refresh": [], "eval": []}
                                       for c in choices}
    for r in range(a.rounds):
        order = choices[r % len(choices):] + choices[:r % len(choices)]
        for c in order:
            run, st = runs[c]
            batch = [base.train_set[(r * B + i) % n_pool] for i in range(B)]
            res[c]["step"].append(one_step(run, st, batch))
            res[c]["refresh"].append(one_refresh(run, st, rows_refresh))
            if a.eval_problems > 0:
                from paced_train.loop.evaluate import evaluate

                held = base.heldout[:a.eval_problems]
                t1 = time.perf_counter()
                evaluate(run.student, run.tok, held, base.retention, cfg.eval, seed=r)
                res[c]["eval"].append({"wall": time.perf_counter() - t1})
            print(f"round {r} {c}: step {res[c]['step'][-1]['wall']:.1f}s refresh "
                  f"{res[c]['refresh'][-1]['wall']:.1f}s", file=sys.stderr, flush=True)
    scale = n_pool / len(rows_refresh)
    k, n_eval = cfg.eval.mean_at_k, min(a.eval_problems, len(base.heldout))
    out = {"config": str(a.config), "overrides": a.overrides, "batch_size": B,
           "max_new_tokens": cfg.rollouts.max_new_tokens, "K": cfg.rollouts.K,
           "n_train": n_pool, "n_heldout": len(base.heldout), "rounds": a.rounds,
           "threads": a.threads, "load_s": t_load, "choices": {}}
    for c in choices:
        run, st = runs[c]
        med = lambda key, part="step", c=c: statistics.median(  # noqa: E731
            x[key] for x in res[c][part])
        train = adapters.trainable_parameters(run.student)
        info = adapters.describe(run.student, n_params(run.student))
        out["choices"][c] = {
            "step_s": med("wall"), "sample_s": med("sample"), "teacher_s": med("teacher"),
            "student_s": med("student"), "step_flops": med("flops"),
            "refresh_s": med("wall", "refresh") * scale,
            "refresh_flops": med("flops", "refresh") * scale,
            # generations of a full evaluation / of the timed one (held-out greedy + k
            # samples each, retention greedy)
            "eval_s": (med("wall", "eval") * (len(base.heldout) * (1 + k) + len(base.retention))
                       / (n_eval * (1 + k) + len(base.retention)) if a.eval_problems > 0
                       else None),
            "trainable_params": info["trainable_params"],
            "backward_vs_full": info["backward_vs_full"],
            "weights_mb": tensor_bytes({id(t): t for t in run.student.parameters()}.values())
            / 2**20,  # tied weights once
            "grads_mb": tensor_bytes(train) / 2**20,
            "adam_mb": tensor_bytes(t for s in run.opt.state.values() for t in s.values()
                                    if torch.is_tensor(t) and t.dim() > 0) / 2**20,
            "activations_mb": med("activations") / 2**20,
            "steps_s": [x["wall"] for x in res[c]["step"]],
            "refreshes_s": [x["wall"] * scale for x in res[c]["refresh"]]}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = markdown(out)
    print(text)
    if a.out:
        d = Path(a.out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "step_time.json").write_text(json.dumps(out, indent=2))
        (d / "step_time.md").write_text(text)
    return out


def markdown(out: dict) -> str:
    lines = [f"Batch {out['batch_size']} problems, completions of at most "
             f"{out['max_new_tokens']} tokens, refresh = K = {out['K']} rollouts of each of the "
             f"{out['n_train']} training problems; median of {out['rounds']} interleaved "
             f"rounds, {out['threads']} torch thread(s).", "",
             "| choice | trainable params | step s | (sample / teacher / student s) | "
             "refresh s | refresh in steps | step GFLOPs | backward × full | weights MB | "
             "grads + AdamW MB | saved activations MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c, e in out["choices"].items():
        lines.append(
            f"| {c} | {e['trainable_params'] / 1e6:.2f} M | {e['step_s']:.2f} | "
            f"{e['sample_s']:.2f} / {e['teacher_s']:.2f} / {e['student_s']:.2f} | "
            f"{e['refresh_s']:.1f} | {e['refresh_s'] / e['step_s']:.1f} | "
            f"{e['step_flops'] / 1e9:.1f} | {e['backward_vs_full']:.3f} | "
            f"{e['weights_mb']:.0f} | {e['grads_mb'] + e['adam_mb']:.0f} | "
            f"{e['activations_mb']:.0f} |")
    if any(e["eval_s"] is not None for e in out["choices"].values()):
        lines += ["", "Evaluation (held-out greedy + mean@k + retention, scaled to "
                  f"{out['n_heldout']} held-out problems): " + ", ".join(
                      f"{c} {e['eval_s']:.0f} s" for c, e in out["choices"].items())]
    e0 = next(iter(out["choices"].values()))
    lines += ["", f"Refresh FLOPs {e0['refresh_flops'] / 1e12:.2f} TFLOPs (the whole pool); "
              f"model load {out['load_s']:.0f} s; peak RSS of the process "
              f"{out['peak_rss_mb']:.0f} MB (all choices together)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
