"""Issue 20: SmolLM2-135M-Instruct self-distillation, Paced against uniform at equal FLOPs, with
fresh pass rates (bench/results/smollm2_verdict/PLAN.md, committed before any run it plans).

  python bench/smollm2_verdict.py --seeds 5 --jobs 2            # the CPU plan, phase 1
  python bench/smollm2_verdict.py --seeds 10 --jobs 2           # phase 2 (seeds 0-4 reused)
  bash bench/gpu_smollm2.sh                                     # one GPU, ~10 min (untimed):
                                                                #   --preset gpu --seeds 5 --jobs 4
  python bench/smollm2_verdict.py --tiny                        # a tiny random Llama, CPU: a test

Arms (one `paced compare` group; the first arm's run of budget.steps sets each seed's FLOPs
budget and every other arm stops at it, pass-rate estimation charged):
  uniform   reverse KL on the student's own samples, w = 1 (the paper's self-distillation)
  paced     reverse KL, w = p(1 - p) from fresh K-rollout pass rates
  hard      reverse KL, w = 1{lo < p_hat < hi}
and a second group: uniform-rl against paced-rl (loss.schedule = "rl", config.METHOD_OVERRIDES)
on the same config.

Runs go to OUT/<group>/<arm>/seed<s> and are cached the way `paced compare` caches them: a
finished run is reused and an interrupted one resumed from its checkpoint, so the plan runs
in pieces (kill it any time, run the same command again). Writes OUT/verdict.json and
OUT/verdict.md: per comparison the paired difference in final held-out accuracy (95 % t-
interval, seeds won, sign-flip p), the AUC ratio, forgetting reduction; the plan's checks
(uniform learns: its gain over the start against its seed-to-seed spread; the oldest pass rate
any Paced step read against 10 % of the budget; estimation's share of FLOPs against 20 %);
and how many seeds a paired interval of width 0.05 would need, from the measured spread.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from paced_theory.jsonable import strict_json  # noqa: E402
from paced_theory.stats import paired  # noqa: E402
from paced_train.config import METHOD_OVERRIDES, apply_overrides, load_config  # noqa: E402
from paced_train.experiments.compare import Group, run_groups, summarise  # noqa: E402
from paced_train.experiments.report import ci, pm  # noqa: E402
from paced_train.rundir import lock_dir  # noqa: E402

CONFIG = ROOT / "configs" / "smollm2" / "verdict.toml"
ARMS = {"uniform": ["weights.method=uniform", "loss.schedule=reverse"],
        "paced": ["weights.method=paced", "loss.schedule=reverse"],
        "hard": ["weights.method=hard", "loss.schedule=reverse"]}
RL_ARMS = {"uniform-rl": METHOD_OVERRIDES["rl"], "paced-rl": METHOD_OVERRIDES["paced-rl"]}
AGE_SHARE = 0.10     # pass rates never older than this share of the budget (in steps)
FLOPS_SHARE = 0.20   # estimation at most this share of Paced's FLOPs
WIDTH = 0.05         # the paired interval's width the issue asks for
PRESETS = {
    # the plan's CPU run: configs/smollm2/verdict.toml as committed
    "cpu": [],
    # one GPU (bf16 autocast on CUDA is the loop's), all parameters, a larger batch, more
    # steps. Timings are estimates until it has run on a GPU: the script prints each run's
    # wall time; rerunning continues where a killed call stopped.
    "gpu": ["run.device=cuda", "run.threads=0", "trainable.mode=all", "optim.batch_size=32",
            "optim.lr=1e-5", "budget.steps=240", "rollouts.refresh_every=8",
            "rollouts.max_age=24", "rollouts.chunk=128", "run.ckpt_every=60"],
}
# --tiny: 4 training problems per level (60 held out), so a refresh costs about as much as a
# step, as in the real plan's proportions, and every arm trains within uniform's 6 steps
TINY = ["trainable.mode=top", "trainable.top_blocks=1", "optim.batch_size=4",
        "optim.lr=1e-3", "budget.steps=6", "rollouts.K=2", "rollouts.max_new_tokens=4",
        "rollouts.refresh_every=2", "rollouts.max_age=2", "eval.max_new_tokens=4",
        "eval.mean_at_k=1", "data.n_eval_per_cell=60", "run.ckpt_every=2",
        "optim.warmup_steps=1",
        # a random model solves nothing (every pass rate 0): a floor lets Paced train anyway
        "weights.floor=0.05"]


def tiny_llama(path: Path) -> Path:
    """A 2-block random Llama with a character-level tokenizer and a chat template, saved
    with save_pretrained (what --tiny trains instead of SmolLM2; built once per --out)."""
    if (path / "config.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)]
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
                         "{% if add_generation_prompt %}<s>{% endif %}")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=2, pad_token_id=0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def groups_for(cfg, out: Path, arms: list[str] | None) -> dict[str, Group]:
    main = {a: o for a, o in ARMS.items() if arms is None or a in arms}
    out_groups = {"distill": Group(out / "distill", cfg, main)}
    rl = {a: o for a, o in RL_ARMS.items() if arms is None or a in arms}
    if len(rl) == 2:  # uniform RL against Paced RL (the deliverable 3)
        out_groups["rl"] = Group(out / "rl", cfg, rl)
    return out_groups


def seeds_needed(d: dict, width: float = WIDTH) -> int | None:
    """Seeds for a 95 % paired t-interval of full width `width`, from the per-seed
    differences' sd (smallest n with 2 t_{n-1} sd / sqrt(n) <= width)."""
    from scipy import stats

    x = [v for v in d["per_seed"] if v is not None]
    if len(x) < 2:
        return None
    mean = sum(x) / len(x)
    sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (len(x) - 1))
    if sd == 0:
        return len(x)
    for n in range(2, 10_000):
        if 2 * stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) <= width:
            return n
    return None


def report(results: dict[str, dict], seeds: int, header: str) -> str:
    lines = [header, "", "## Planned comparisons (bench/results/smollm2_verdict/PLAN.md)", "",
             "| group | arm | against | Δ final acc | AUC ratio | forgetting reduction | "
             "seeds for width 0.05 |", "|---|---|---|---|---|---|---|"]
    checks = []
    for g, res in results.items():
        base = res["baseline"]
        u = res["methods"][base]["per_seed"]
        for m, e in res["methods"].items():
            if m == base:
                continue
            d = paired(e["per_seed"]["final_acc"], u["final_acc"])
            r = paired(e["per_seed"]["auc"], u["auc"], kind="ratio")
            f = paired(u["forgetting"], e["per_seed"]["forgetting"])
            lines.append(f"| {g} | {m} | {base} | {ci(d)} | {ci(r, '{:.3f}')} | {ci(f)} | "
                         f"{seeds_needed(d) or '–'} |")
        gain = paired(u["final_acc"], u["start_acc"])
        sd = res["methods"][base]["final_acc"][1]
        ratio = gain["mean"] / sd if sd > 0 else (float("inf") if gain["mean"] > 0 else 0.0)
        verdict = ("not checkable with one seed" if len(u["final_acc"]) < 2 else
                   "ok" if ratio >= 3 else "CHECK FAILED")
        checks.append(f"- {g}: {base}'s gain over the start {ci(gain)}; seed-to-seed sd of its "
                      f"final accuracy {sd:.3f}, gain / sd = {ratio:.1f} (the plan asks for "
                      f"at least 3: {verdict}).")
        budget = max(res["methods"][base]["per_seed"]["steps"])
        for m, e in res["methods"].items():
            ages = [a for a in e["per_seed"]["pass_rate_age_max"] if a is not None]
            if not ages:
                continue
            share = e["rollout_flops_share"][0]
            ok = max(ages) <= AGE_SHARE * budget and share <= FLOPS_SHARE
            checks.append(f"- {g}, {m}: oldest pass rate read {max(ages):.0f} steps (limit "
                          f"{AGE_SHARE * budget:.0f}, 10 % of {budget} steps), estimation "
                          f"{share:.3f} of FLOPs (limit {FLOPS_SHARE}), "
                          f"{e['rollout_share'][0]:.3f} of train time: "
                          f"{'ok' if ok else 'CHECK FAILED'}.")
    lines += ["", f"Mean [95 % paired t-interval over {seeds} seeds] seeds won / seeds, "
              "two-sided sign-flip p-value; n.s. where the interval contains 0 (1 for the "
              "ratio). 'Seeds for width 0.05': how many seeds a paired t-interval of full width "
              "0.05 would need at the measured sd of the differences.", "",
              "## Checks the plan requires", "", *checks]
    for g, res in results.items():
        lines += ["", f"## Group {g}", "", "| arm | final acc | AUC | forgetting | mean@k | "
                  "oldest pass rate (steps) | estimation share of FLOPs / time | steps | "
                  "wall s |", "|---|---|---|---|---|---|---|---|---|"]
        for m, e in res["methods"].items():
            lines.append(f"| {m} | {pm(e['final_acc'])} | {pm(e['auc'])} | "
                         f"{pm(e['forgetting'])} | {pm(e['mean_at_k'])} | "
                         f"{pm(e.get('pass_rate_age_max'), '{:.0f}')} | "
                         f"{e['rollout_flops_share'][0]:.3f} / {e['rollout_share'][0]:.3f} | "
                         f"{pm(e['steps'], '{:.0f}')} | {pm(e['wall_s'], '{:.0f}')} |")
        lines += ["", f"Start: held-out accuracy {pm(res['start_acc'])}. By level (final, "
                  "mean ± sd): " + "; ".join(
                      f"{m}: " + ", ".join(f"{k} {v[0]:.2f}" for k, v in
                                           e["acc_by_difficulty"].items())
                      for m, e in res["methods"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--tiny", action="store_true",
                    help="a tiny random Llama instead of SmolLM2, tiny sizes, CPU (a test)")
    ap.add_argument("--arms", default="", help="comma-separated subset of the arms "
                    f"({', '.join([*ARMS, *RL_ARMS])}); the first of a group is its baseline")
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--out", default="")
    ap.add_argument("--dry-run", action="store_true", help="print the runs' configs, train none")
    ap.add_argument("overrides", nargs="*", help="section.key=value applied last")
    a = ap.parse_args(argv)
    out = Path(a.out or ("runs/smollm2_verdict_tiny" if a.tiny
                         else f"runs/smollm2_verdict_{a.preset}"))
    over = ["run.progress=false", *PRESETS[a.preset]]
    if a.tiny:
        over += ["run.device=cpu", f'models.student="{tiny_llama(out / "tiny-llama")}"', *TINY]
    cfg = load_config(a.config, [*over, *a.overrides])
    arms = [x.strip() for x in a.arms.split(",") if x.strip()] or None
    groups = groups_for(cfg, out, arms)
    if a.dry_run:
        for g, grp in groups.items():
            for arm, o in grp.arms.items():
                c = apply_overrides(grp.cfg, o)
                print(f"{g}/{arm}: trainable {c.trainable.mode}, {c.models.student}, batch "
                      f"{c.optim.batch_size}, {c.budget.steps} steps, device {c.run.device}, "
                      f"loss {c.loss.schedule}, weights {c.weights.method}")
        return {}
    t0 = time.time()
    for grp in groups.values():
        grp.out_dir.mkdir(parents=True, exist_ok=True)
    names = list(groups)
    with lock_dir(out):
        runs = run_groups([groups[g] for g in names], a.seeds, a.jobs)
    results = {g: summarise(r, a.seeds) for g, r in zip(names, runs)}
    cmd = " ".join(["python bench/smollm2_verdict.py", *(argv if argv is not None
                                                          else sys.argv[1:])])
    header = (f"# SmolLM2-135M-Instruct self-distillation: Paced vs uniform (issue 20), "
              f"{a.seeds} paired seeds\n\n`{cmd}` ({a.jobs} runs at a time; this call "
              f"{time.time() - t0:.0f} s, finished runs reused).")
    text = report(results, a.seeds, header)
    (out / "verdict.md").write_text(text)
    (out / "verdict.json").write_text(json.dumps(strict_json(
        {"seeds": a.seeds, "preset": a.preset, "tiny": a.tiny, "groups": results}), indent=2))
    print(text)
    return results


if __name__ == "__main__":
    main()
