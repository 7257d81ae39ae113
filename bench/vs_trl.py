"""paced_train's distillation step against TRL's, on the same tiny HF models and the same batch.

Two steps, each forward + backward + AdamW step on one batch of B = 16 problems:
  off-policy forward KL   KL(teacher || student) on fixed completions (the teacher's greedy
                          references, precomputed once and given to both sides)
  on-policy reverse KL    KL(student || teacher) on the student's own samples, generation
                          (max_new_tokens = 32, temperature 1, top-p 1) included in the step
through
  paced      paced_train.loop.trainer.distill_step, models loaded by paced_train.models.hf.load_any
  GKD        trl.experimental.gkd.GKDTrainer (lmbda = 0, beta = 0 / lmbda = 1, beta = 1)
  Distill    trl.DistillationTrainer (on-policy only; beta = 1), TRL's maintained successor
the loss values of paced_train.loop.losses against TRL's on identical inputs, and PACED inside
TRL: paced_train.integrations.trl.PacedDistillationTrainer's step against plain
DistillationTrainer's at the same kept prompts (the plug-in's overhead). Prints markdown
tables and writes them to bench/results/vs_trl.md (raw numbers in vs_trl.json). Asserts
nothing about time.

Setup: TRL is the project's optional extra `trl` (pinned to 1.16), which the `dev` extra
includes, so the project's venv has it (`make install`):

    make bench-trl                         # or: .venv/bin/python bench/vs_trl.py
                                           # about 2-3 minutes on 2 idle CPU cores

Models: a student (Llama, 2 layers, hidden 64) and a teacher (Llama, 4 layers, hidden 128),
vocabulary 2048 (a character tokenizer padded with filler tokens), random weights, built
here with LlamaConfig and saved with save_pretrained; nothing comes from the hub.

What is timed (float32, CPU, torch.set_num_threads(1) and OMP_NUM_THREADS=1 in every
subprocess): for each step and each TRL trainer, TRL's and paced's steps ALTERNATE in one
process (TRL, paced, TRL, ...), so a shared machine's load hits both alike; the ratio
reported is the median over step pairs of TRL's time over paced's, in CPU time
(time.process_time(): with one thread, the work done, not the time spent waiting for a
core) and in wall time (time.perf_counter()), after --warmup steps.
  paced     one call of paced_train.loop.trainer.distill_step: encode + pack, [student sampling +
            verification], teacher forward, student forward, divergence, weighted loss,
            backward, grad clipping, AdamW step. Off-policy: the teacher references are in
            the step's cache already (a run generates them once per problem).
  TRL       trainer.train() with a callback: the time from on_step_begin to on_step_end,
            i.e. training_step ([generation +] compute_loss + backward), grad clipping, the
            AdamW step, the (constant) LR scheduler and zero_grad; paced's step runs after
            on_step_end, outside that window. The collator runs before on_step_begin and is
            not timed (paced's encode + pack is: a small bias for TRL). TRL is configured
            for equal work: bf16=False and gradient_checkpointing=False (TRL's defaults are
            True for both), temperature 1, top_k 0, top_p 1.
Peak memory: each side alone in a fresh subprocess; resource.getrusage(RUSAGE_SELF).ru_maxrss
(the peak resident set) minus the resident set just before the first step. tracemalloc
cannot see torch's CPU tensors, so it is not used. The delta includes the optimizer state
created at the first step and whatever the library allocates on first use.

Options: --batch 16 --max-new-tokens 32 --warmup 2 --repeats 12 --mem-steps 3 --vocab 2048
--out DIR (defaults shown; the default --out is bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHARS = "0123456789+*=<>,:? abcdefghijklmnopqrstuvwxyz"
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}:{{ m['content'] }}</s>{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant:{% endif %}")
# name: (hidden, layers, intermediate, seed)
SIZES = {"student": (64, 2, 128, 1), "teacher": (128, 4, 256, 2)}
LR = 1e-4
MARK = "@@VS_TRL@@"


# --------------------------------------------------------------------------- helpers
def quiet() -> None:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    warnings.filterwarnings("ignore")


def threads() -> None:
    import torch

    torch.set_num_threads(1)


def rss_now() -> int:
    """Current resident set size in bytes (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    """Peak resident set size of this process in bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------ the models
def build_models(root: Path, vocab: int) -> None:
    """Student and teacher directories (config.json, safetensors, tokenizer, chat template):
    a miniature of a real HF checkpoint, built as tests/train/models/test_hf.py builds its own."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tokens = specials + list(CHARS)
    tokens += [f"<f{i}>" for i in range(vocab - len(tokens))]
    core = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[],
                                unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>")
    tok.chat_template = TEMPLATE
    for name, (hidden, layers, inter, seed) in SIZES.items():
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=hidden, intermediate_size=inter,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=256, initializer_range=0.2,
                          tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
                          pad_token_id=0)
        LlamaForCausalLM(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)


def paced_cfg(root: Path, kind: str, args):
    from paced_train.config import load_config

    return load_config(None, [
        f"models.student={root / 'student'}", f"models.teacher={root / 'teacher'}",
        "run.device=cpu", "run.progress=false", "run.seed=0",
        f"loss.schedule={kind}", "loss.temperature=1.0", "weights.method=uniform",
        f"optim.batch_size={args.batch}", f"optim.lr={LR}", "optim.grad_clip=1.0",
        "optim.weight_decay=0.0", f"rollouts.max_new_tokens={args.max_new_tokens}",
        "rollouts.temperature=1.0", "rollouts.top_p=1.0"])


def prepare(root: Path, args) -> dict:
    """The batch both sides train on: the trainer's first batch of problems, their prompt
    tokens, and the teacher's greedy references (what paced caches per problem)."""
    from paced_train.loop.batching import candidates
    from paced_train.loop.rollouts import generate_and_verify
    from paced_train.loop.trainer import setup

    cfg = paced_cfg(root, "forward", args)
    run, _ = setup(cfg)
    idx = candidates(len(run.train_set), args.batch, cfg.run.seed, 1)
    batch = [run.train_set[i] for i in idx]
    _, refs, _ = generate_and_verify(run.teacher, run.tok, batch, args.max_new_tokens,
                                     temperature=0.0)
    pool = [run.train_set[i] for i in candidates(len(run.train_set), 2 * args.batch,
                                                 cfg.run.seed, 1)]  # its first B: the batch
    assert [p.id for p in pool[:args.batch]] == [p.id for p in batch]
    data = {"ids": [p.id for p in batch], "prompts": [p.prompt for p in batch],
            "pool": [{"id": p.id, "prompt": p.prompt} for p in pool],
            "prompt_ids": [run.tok.encode_prompt(p.prompt) for p in batch],
            "refs": [r or [run.tok.eos_id] for r in refs],
            "rendered": [run.tok.hf.apply_chat_template([{"role": "user", "content": p.prompt}],
                                                        add_generation_prompt=True,
                                                        tokenize=False) for p in batch],
            "eos_id": run.tok.eos_id, "pad_id": run.tok.pad_id,
            "params": {n: sum(p.numel() for p in m.parameters())
                       for n, m in (("student", run.student), ("teacher", run.teacher))}}
    (root / "batch.json").write_text(json.dumps(data))
    return data


# --------------------------------------------------------------------------- workers
def paced_stepper(root: Path, kind: str, args):
    """(step, scored): step() runs one paced_train.loop.trainer.distill_step on the batch and
    returns (wall seconds, CPU seconds, loss); scored collects the number of tokens each
    step's loss scores."""

    import numpy as np

    from paced_train import trainer as T
    from paced_train.loop import losses
    from paced_train.loop.passrates import normaliser

    data = json.loads((root / "batch.json").read_text())
    cfg = paced_cfg(root, kind, args)
    run, st = T.setup(cfg)  # load_any on both directories: the path users run
    by_id = {p.id: p for p in run.train_set}
    batch = [by_id[i] for i in data["ids"]]
    st.references.update(dict(zip(data["ids"], data["refs"])))
    st.reference_ok.update(dict.fromkeys(data["ids"], False))
    weights = np.ones(len(batch))
    norm = normaliser(weights, cfg.weights.normalise, cfg.optim.batch_size)
    scored: list[int] = []
    token_kl = losses.token_kl

    def counting_token_kl(s, t, mask, *a, **kw):  # measurement hook: tokens the loss scores
        scored.append(int((mask != 0).sum()))
        return token_kl(s, t, mask, *a, **kw)

    losses.token_kl = counting_token_kl

    def step() -> tuple[float, float, float]:
        st.step += 1
        t0, c0 = time.perf_counter(), time.process_time()
        out = T.distill_step(run, st, batch, weights, norm)
        return time.perf_counter() - t0, time.process_time() - c0, out["loss"]

    return step, scored


def _hf_models(root: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(root / "student"), local_files_only=True)
    tok.padding_side = "left"
    student, teacher = (AutoModelForCausalLM.from_pretrained(str(root / n), dtype=torch.float32,
                                                             local_files_only=True)
                        for n in ("student", "teacher"))
    return tok, student, teacher


def _common_args(args, out: str, steps: int) -> dict:
    return dict(output_dir=out, per_device_train_batch_size=args.batch, max_steps=steps,
                learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
                weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch", bf16=False,
                fp16=False, gradient_checkpointing=False, use_cpu=True, report_to="none",
                save_strategy="no", logging_steps=steps, disable_tqdm=True, seed=0,
                dataloader_num_workers=0)


def gkd_trainer(root: Path, kind: str, args, out: str, steps: int, rows=None):
    """GKDTrainer on pre-tokenised examples: DataCollatorForChatML keeps input_ids and takes
    the prompt / completion boundary from completion_mask, so TRL sees exactly paced's
    tokens. Off-policy: lmbda 0, beta 0 (forward KL); on-policy: lmbda 1, beta 1."""
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    data = json.loads((root / "batch.json").read_text())
    if rows is None:
        rows = [{"prompt": r, "input_ids": p + c,
                 "completion_mask": [0] * len(p) + [1] * len(c)}
                for r, p, c in zip(data["rendered"], data["prompt_ids"], data["refs"])]
    tok, student, teacher = _hf_models(root)
    on = kind == "reverse"
    cfg = GKDConfig(**_common_args(args, out, steps), lmbda=1.0 if on else 0.0,
                    beta=1.0 if on else 0.0, temperature=1.0,
                    max_new_tokens=args.max_new_tokens, remove_unused_columns=False)
    trainer = GKDTrainer(model=student, teacher_model=teacher, args=cfg,
                         train_dataset=Dataset.from_list(rows), processing_class=tok)
    return trainer, lambda inp: int((inp["labels"][:, 1:] != -100).sum())


def distill_trainer(root: Path, kind: str, args, out: str, steps: int):
    """DistillationTrainer (on-policy only) with beta 1 (reverse KL), conversational prompts
    that its chat template turns into exactly paced's prompt tokens (checked)."""
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    data = json.loads((root / "batch.json").read_text())
    tok, student, teacher = _hf_models(root)
    cfg = DistillationConfig(**_common_args(args, out, steps), beta=1.0, temperature=1.0,
                             top_p=1.0, top_k=0, max_completion_length=args.max_new_tokens)
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in data["prompts"]]
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=cfg,
                                  train_dataset=Dataset.from_list(rows), processing_class=tok)
    ids, _, _ = trainer._tokenize_prompts([r["prompt"] for r in rows])
    if [list(x) for x in ids] != data["prompt_ids"]:
        raise SystemExit("DistillationTrainer tokenises the prompts differently from paced")
    return trainer, lambda inp: int(inp["completion_mask"].sum())


TRL = {"gkd": gkd_trainer, "distill": distill_trainer}


def plugin_trainers(root: Path, args, out: str, steps: int):
    """(plain, plug-in) at the same kept prompts: plain trl.DistillationTrainer on the B kept
    prompts, and PACED's PacedDistillationTrainer on a pool of 2B prompts whose pass-rate table
    gives the other B weight 0 (c = 0 or K of K = 8) and the kept ones c = 4 (w = 1/4), so its
    sampler draws exactly the B kept prompts every step. Both: beta 1 (reverse KL), the same
    generation settings and TrainingArguments as the pair rows."""
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    from paced_train.integrations.trl import PacedDistillationTrainer
    from paced_train.loop.passrates import PassRateTable

    data = json.loads((root / "batch.json").read_text())
    B = args.batch
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}], "id": r["id"]}
            for r in data["pool"]]
    table = PassRateTable([r["id"] for r in rows])
    table.refresh(table.ids, [4] * B + [0, 8] * (B // 2) + [0] * (B % 2), 8, 0)
    made = []
    for plugin in (False, True):
        tok, student, teacher = _hf_models(root)
        cfg = DistillationConfig(**_common_args(args, f"{out}/{int(plugin)}", steps), beta=1.0,
                                 temperature=1.0, top_p=1.0, top_k=0,
                                 max_completion_length=args.max_new_tokens)
        if plugin:
            made.append(PacedDistillationTrainer(
                model=student, teacher_model=teacher, args=cfg, processing_class=tok,
                train_dataset=Dataset.from_list(rows), pass_rates=table))
        else:
            made.append(DistillationTrainer(model=student, teacher_model=teacher, args=cfg,
                                            processing_class=tok,
                                            train_dataset=Dataset.from_list(rows[:B])))
    return made


def trl_stepper(trainer, steps: int):
    """(step, scored): one optimizer step of a TRL trainer driven by hand, as Trainer's inner
    loop runs it (next batch from its data loader, training_step with its generation,
    gradient clipping, the optimizer, the scheduler, zero_grad); two Trainer loops cannot run
    in one process, and alternating steps needs both in one. The data loader is timed too:
    it is where the plug-in's sampler reads the weights."""
    import torch

    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    trainer.current_gradient_accumulation_steps = 1
    loader = trainer.get_train_dataloader()
    batches = iter(loader)
    model = trainer.model
    model.train()
    scored: list[int] = []
    compute_loss = trainer.compute_loss

    def recording_compute_loss(m, inputs, *a, **kw):  # measurement hook
        scored.append(int(inputs["completion_mask"].sum()))
        return compute_loss(m, inputs, *a, **kw)

    trainer.compute_loss = recording_compute_loss

    def step() -> tuple[float, float, float]:
        nonlocal batches
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            batch = next(batches)
        except StopIteration:  # the next epoch (a pool of B prompts is one batch long)
            batches = iter(loader)
            batch = next(batches)
        loss = trainer.training_step(model, batch, None)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        model.zero_grad()
        return time.perf_counter() - t0, time.process_time() - c0, float(loss)

    return step, scored


def worker_plugin(root: Path, kind: str, args) -> dict:
    """Plain TRL's and the PACED plug-in's steps alternated in one process (plain, plug-in,
    plug-in, plain, plain, ...: neither side always goes first), each driven by trl_stepper."""
    steps = args.warmup + args.repeats
    with tempfile.TemporaryDirectory() as out:
        plain, plugin = plugin_trainers(root, args, out, steps)
        sides = {"plain": trl_stepper(plain, steps), "plugin": trl_stepper(plugin, steps)}
        res = {k: {"times_s": [], "cpu_s": [], "losses": []} for k in sides}
        for i in range(steps):  # the order alternates too: (plain, plug-in), (plug-in, plain)
            for k in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                step = sides[k][0]
                dt, dc, loss = step()
                res[k]["times_s"].append(dt)
                res[k]["cpu_s"].append(dc)
                res[k]["losses"].append(loss)
        drawn = sorted(set(plugin._paced.drawn))
    for k, (_, scored) in sides.items():
        res[k]["scored_tokens"] = scored
    res["plugin_prompts"] = drawn
    return res


def run_trl(trainer, scored_of, between=None) -> dict:
    """trainer.train(), timing each step from on_step_begin to on_step_end. `between`, if
    given, runs after each step's on_step_end, outside the timed window."""
    from transformers import TrainerCallback

    times, cpu, values, scored, divisors, rss0 = [], [], [], [], [], []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *a, **kw):
            rss0.append(rss_now())

        def on_step_begin(self, *a, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **kw):
            times.append(time.perf_counter() - self.t0)
            cpu.append(time.process_time() - self.c0)
            if between is not None:
                between()

    compute_loss = trainer.compute_loss

    def recording_compute_loss(model, inputs, *a, **kw):  # measurement hook
        loss = compute_loss(model, inputs, *a, **kw)
        values.append(float(loss.detach()))
        scored.append(scored_of(inputs))
        n = kw.get("num_items_in_batch", a[1] if len(a) > 1 else None)
        divisors.append(None if n is None else int(n))
        return loss

    trainer.compute_loss = recording_compute_loss
    trainer.add_callback(StepTimer())
    trainer.train()
    return {"times_s": times, "cpu_s": cpu, "losses": values, "scored_tokens": scored,
            "divisors": divisors, "rss0": rss0[0]}


def worker_pair(root: Path, kind: str, args) -> dict:
    """TRL's and paced's steps alternated in one process (TRL, paced, TRL, paced, ...), so
    that the load of a shared machine hits both alike: args.kind is 'forward:gkd',
    'reverse:gkd' or 'reverse:distill'."""
    kind, impl = kind.split(":")
    step, scored = paced_stepper(root, kind, args)
    paced = {"times_s": [], "cpu_s": [], "losses": [], "scored_tokens": scored}

    def between():
        dt, dc, loss = step()
        paced["times_s"].append(dt)
        paced["cpu_s"].append(dc)
        paced["losses"].append(loss)

    with tempfile.TemporaryDirectory() as out:
        trainer, scored_of = TRL[impl](root, kind, args, out, args.warmup + args.repeats)
        trl = run_trl(trainer, scored_of, between)
    trl.pop("rss0")
    return {"paced": paced, "trl": trl}


def worker_memory(root: Path, kind: str, args) -> dict:
    """One side alone in a fresh process: peak RSS over its steps ('paced:forward', ...)."""
    impl, kind = kind.split(":")
    steps = args.warmup + args.mem_steps
    if impl == "paced":
        step, scored = paced_stepper(root, kind, args)
        rss0 = rss_now()
        times = [step()[0] for _ in range(steps)]
        res = {"times_s": times, "scored_tokens": scored}
    else:
        with tempfile.TemporaryDirectory() as out:
            res = run_trl(*TRL[impl](root, kind, args, out, steps))
        rss0 = res.pop("rss0")
    return {**res, "rss_before_mib": rss0 / 2**20, "peak_rss_mib": rss_peak() / 2**20,
            "peak_delta_mib": (rss_peak() - rss0) / 2**20}


def worker_losses(root: Path, kind: str, args) -> dict:
    """Loss values (and gradients) of paced and TRL on identical inputs and weights."""
    import torch
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    from paced_train import losses as L
    from paced_train.loop.batching import pack
    from paced_train.models.hf import load_any

    data = json.loads((root / "batch.json").read_text())
    student, tok, _ = load_any(str(root / "student"))
    teacher, _, _ = load_any(str(root / "teacher"))
    hf_s, hf_t = student.hf, teacher.hf  # the very same modules go to TRL
    hf_s.train()
    B, eos, pad_id = len(data["ids"]), data["eos_id"], data["pad_id"]
    prompts = data["prompt_ids"]
    # completions of varying length, so that the per-sequence and per-token reductions differ:
    # off-policy: the references cut to 4..32 tokens (+ eos); on-policy: student samples
    # (temperature 1), every other one cut short with an eos and followed by junk that the
    # masking must ignore.
    off = [r[: 4 + (7 * i) % max(len(r) - 3, 1)] + [eos] for i, r in enumerate(data["refs"])]
    g = torch.Generator().manual_seed(0)
    samples = student.generate(prompts, args.max_new_tokens, temperature=1.0, generator=g,
                               eos_id=eos, pad_id=pad_id)
    on = [s[: 3 + (5 * i) % 20] + [eos] if i % 2 == 0 else s for i, s in enumerate(samples)]
    # tokens after the eos in TRL's generated batch (rows without an eos get none)
    junk = [[5 + (i % 9)] * 3 if c[-1] == eos else [] for i, c in enumerate(on)]

    def grads() -> torch.Tensor:
        flat = torch.cat([p.grad.flatten() for p in hf_s.parameters() if p.grad is not None])
        hf_s.zero_grad(set_to_none=True)
        return flat

    def paced_losses(comps, direction):
        x, _, mask = pack(prompts, comps, pad_id)
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        per_mean = L.token_kl(s, t, mask, direction)
        per_sum = L.token_kl(s, t, mask, direction, reduction="sum")
        ones = torch.ones(B)
        as_trainer = L.weighted_loss(per_mean, ones, B)       # distill_step's reduction
        per_token = L.weighted_loss(per_sum, ones, float(mask.sum()))
        per_token.backward(retain_graph=True)
        g_tok = grads()
        return float(as_trainer), float(per_token), g_tok, int(mask.sum())

    res: dict = {}
    with tempfile.TemporaryDirectory() as out:
        cfg = GKDConfig(**_common_args(args, out, 1), lmbda=0.0, beta=0.0, temperature=1.0,
                        max_new_tokens=args.max_new_tokens, remove_unused_columns=False)
        rows = [{"prompt": r, "input_ids": p + c, "completion_mask": [0] * len(p) + [1] * len(c)}
                for r, p, c in zip(data["rendered"], prompts, off)]
        gkd = GKDTrainer(model=hf_s, teacher_model=hf_t, args=cfg,
                         train_dataset=Dataset.from_list(rows), processing_class=tok.hf)
        # -- the loss functions alone, on the same logits: generalized JSD for several beta
        x, _, mask = pack(prompts, off, pad_id)
        with torch.no_grad():
            s_log, t_log = student(x), teacher(x)
        labels = torch.where(mask > 0, x, torch.full_like(x, -100))  # any id where scored
        fn = {}
        for beta in (0.0, 0.5, 1.0):
            for temp in (1.0, 2.0):
                trl_v = GKDTrainer.generalized_jsd_loss(s_log, t_log, labels, beta=beta,
                                                        temperature=temp)
                ours = L.weighted_loss(L.generalized_jsd(s_log, t_log, mask, beta, temp,
                                                         reduction="sum"),
                                       torch.ones(B), float(mask.sum()))
                fn[f"beta={beta:g}, T={temp:g}"] = (float(trl_v), float(ours))
        res["jsd_function"] = fn

        # -- off-policy forward KL through GKDTrainer.compute_loss (its collator, its padding)
        inputs = gkd.data_collator([dict(r) for r in rows])
        n_items = int((inputs["labels"][:, 1:] != -100).sum())
        trl_loss = gkd.compute_loss(hf_s, inputs, num_items_in_batch=n_items)
        trl_loss.backward()
        g_trl = grads()
        as_trainer, per_token, g_ours, n_ours = paced_losses(off, "forward")
        res["off_policy_forward"] = {"gkd": float(trl_loss), "paced_as_trainer": as_trainer,
                                     "paced_token_mean": per_token, "scored": [n_items, n_ours],
                                     "grad_max_abs_diff": float((g_trl - g_ours).abs().max()),
                                     "grad_norm": float(g_ours.norm())}

        # -- on-policy reverse KL: GKD's own masking of generated sequences (a stub model
        #    returns the fixed samples from generate), then GKD's compute_loss
        class Fixed:
            def generate(self, input_ids, attention_mask, generation_config, **kw):
                comp = [c + j for c, j in zip(on, junk)]
                width = max(len(c) for c in comp)
                tail = torch.tensor([c + [pad_id] * (width - len(c)) for c in comp])
                return type("Out", (), {"sequences": torch.cat([input_ids, tail], 1)})

        gkd.beta = 1.0
        ids, am, lab = GKDTrainer.generate_on_policy_outputs(
            Fixed(), {"prompts": inputs["prompts"],
                      "prompt_attention_mask": inputs["prompt_attention_mask"]},
            gkd.generation_config)
        trl_loss = gkd.compute_loss(hf_s, {"input_ids": ids, "attention_mask": am,
                                           "labels": lab}, num_items_in_batch=None)
        trl_loss.backward()
        g_trl = grads()
        as_trainer, per_token, g_ours, n_ours = paced_losses(on, "reverse")
        n_items = int((lab[:, 1:] != -100).sum())
        res["on_policy_reverse"] = {"gkd": float(trl_loss), "paced_as_trainer": as_trainer,
                                    "paced_token_mean": per_token, "scored": [n_items, n_ours],
                                    "grad_max_abs_diff": float((g_trl - g_ours).abs().max()),
                                    "grad_norm": float(g_ours.norm())}

    # what GKD divides its on-policy loss by inside trainer.train(): one real on-policy step
    # on the dataset of cut references (fewer tokens than the student will sample)
    with tempfile.TemporaryDirectory() as out:
        run = run_trl(*gkd_trainer(root, "reverse", args, out, 1, rows=rows))
        res["gkd_on_policy_divisor"] = {"dataset_tokens": int(
            (inputs["labels"][:, 1:] != -100).sum()), "num_items_in_batch": run["divisors"][0],
            "scored_sample_tokens": run["scored_tokens"][0]}

    with tempfile.TemporaryDirectory() as out:
        dist, _ = distill_trainer(root, "reverse", args, out, 1)
        # the trainer holds its own copies of the same weights (loaded from the directories)
        d_s = dist.accelerator.unwrap_model(dist.model)
        pid = [torch.tensor(p) for p in prompts]
        cid = [torch.tensor(c) for c in on]
        from trl.trainer.utils import pad as trl_pad

        d_inputs = {
            "prompt_ids": trl_pad(pid, padding_value=pad_id, padding_side="left"),
            "prompt_mask": trl_pad([torch.ones_like(p) for p in pid], padding_value=0,
                                   padding_side="left"),
            "completion_ids": trl_pad(cid, padding_value=pad_id, padding_side="right"),
            "completion_mask": trl_pad([torch.ones_like(c) for c in cid], padding_value=0,
                                       padding_side="right")}
        d_loss, _, _ = dist._compute_loss(d_s, d_inputs, None)
        res["on_policy_reverse"]["distill"] = float(d_loss)
    return res


WORKERS = {"pair": worker_pair, "memory": worker_memory, "losses": worker_losses,
           "plugin": worker_plugin}


# ------------------------------------------------------------------------------ main
def spawn(name: str, kind: str, root: Path, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--kind", kind,
           "--root", str(root), "--batch", str(args.batch), "--max-new-tokens",
           str(args.max_new_tokens), "--warmup", str(args.warmup), "--repeats",
           str(args.repeats), "--mem-steps", str(args.mem_steps), "--vocab", str(args.vocab)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [x for x in proc.stdout.splitlines() if x.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"worker {name} {kind} failed (exit {proc.returncode})")
    print(f"  {name:7s} {kind:16s} {time.perf_counter() - t0:5.1f} s", file=sys.stderr)
    return json.loads(lines[-1][len(MARK):])


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "accelerate", "datasets", "trl", "paced"):
        out[pkg] = version(pkg)
    return out


PAIRS = ("forward:gkd", "reverse:gkd", "reverse:distill")
SOLO = ("paced:forward", "gkd:forward", "paced:reverse", "gkd:reverse", "distill:reverse")
NAMES = {"paced": "paced_train distill_step", "gkd": "TRL GKDTrainer",
         "distill": "TRL DistillationTrainer"}
STEPS = {"forward": "off-policy forward KL", "reverse": "on-policy reverse KL (+ generation)"}


def summarise(pair: dict, args) -> dict:
    """Steady-state statistics of one paired run, for wall and CPU time: each side's median
    and minimum, and the median of the step-by-step ratios TRL / paced (adjacent steps)."""
    w = args.warmup
    out = {"paced_scored": statistics.median(pair["paced"]["scored_tokens"][w:]),
           "trl_scored": statistics.median(pair["trl"]["scored_tokens"][w:])}
    for clock, key in (("wall", "times_s"), ("cpu", "cpu_s")):
        p, t = pair["paced"][key][w:], pair["trl"][key][w:]
        out[clock] = {"paced_median_s": statistics.median(p), "paced_min_s": min(p),
                      "trl_median_s": statistics.median(t), "trl_min_s": min(t),
                      "ratio_median": statistics.median(b / a for a, b in zip(p, t)),
                      "ratio_of_minima": min(t) / min(p)}
    return out


def fmt_e(x: float) -> str:
    return f"{x:.1e}"


def report(res: dict, args) -> str:
    v, d, lo, mem = res["versions"], res["data"], res["losses"], res["memory"]
    B, N = args.batch, args.max_new_tokens
    lines = [
        "# paced_train vs TRL: one distillation step",
        "",
        f"Generated by `bench/vs_trl.py` ({time.strftime('%Y-%m-%d')}). CPU, float32, "
        "torch.set_num_threads(1). Versions: " + ", ".join(f"{k} {x}" for k, x in v.items())
        + ".",
        "",
        f"Models: Llama student {d['params']['student']:,} parameters (2 layers, hidden 64), "
        f"Llama teacher {d['params']['teacher']:,} (4 layers, hidden 128), vocabulary "
        f"{args.vocab}, random weights, saved with save_pretrained and loaded by "
        "`paced_train.models.hf.load_any` (paced) and `AutoModelForCausalLM` (TRL). Batch: "
        f"{B} arithmetic prompts (paced's first training batch); off-policy completions: the "
        f"teacher's greedy references ({N} tokens); on-policy: student samples, temperature 1, "
        f"top-p 1, max_new_tokens {N}. AdamW lr {LR}, grad clip 1.0, weight decay 0.",
        "",
        "## Time per step",
        "",
        f"TRL's and paced's steps alternate in one process (TRL, paced, TRL, ...; "
        f"{args.repeats} of each after {args.warmup} warm-up steps), so both see the same "
        "machine load. paced: one `distill_step` call. TRL: `trainer.train()`, timed from "
        "`on_step_begin` to `on_step_end` (training_step with its generation, backward, "
        "clipping, AdamW, scheduler, zero_grad); paced's step runs after `on_step_end`, "
        "outside TRL's window. CPU: `time.process_time()` of the step (one thread, so this is "
        "the work done, and it does not count time the process waited for a core); wall: "
        "`time.perf_counter()`.",
        "",
        "| step | TRL trainer | paced ms / step, CPU (wall) | TRL ms / step, CPU (wall) | "
        "paced ms / sample, CPU | TRL ms / sample, CPU | **TRL / paced, CPU** | "
        "TRL / paced, wall | TRL / paced, CPU minima | scored tokens / step, paced · TRL |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in PAIRS:
        kind, impl = key.split(":")
        x, c, w = res["timing"][key], res["timing"][key]["cpu"], res["timing"][key]["wall"]
        lines.append(
            f"| {STEPS[kind]} | {NAMES[impl]} | {1e3 * c['paced_median_s']:.1f} "
            f"({1e3 * w['paced_median_s']:.1f}) | {1e3 * c['trl_median_s']:.1f} "
            f"({1e3 * w['trl_median_s']:.1f}) | {1e3 * c['paced_median_s'] / B:.2f} | "
            f"{1e3 * c['trl_median_s'] / B:.2f} | **{c['ratio_median']:.2f}** | "
            f"{w['ratio_median']:.2f} | {c['ratio_of_minima']:.2f} | "
            f"{x['paced_scored']:.0f} · {x['trl_scored']:.0f} |")
    lo1, lo2 = res["load_before"], res["load_after"]
    lines += [
        "",
        "ms / step: medians. TRL / paced: the median over step pairs of TRL's time over "
        "paced's (> 1: paced is faster); 'CPU minima': the fastest TRL step over the fastest "
        "paced step. Scored tokens: the completion tokens the loss averages over (on-policy, "
        "what each sampler produced: equal counts mean equal work). Load average "
        f"{lo1[0]:.1f} before and {lo2[0]:.1f} after the bench on {os.cpu_count()} cores; on "
        "a busy machine wall times are noisy and CPU times the better measure.",
        "",
        "## Peak memory",
        "",
        f"Each side alone in a fresh process ({args.warmup} + {args.mem_steps} steps): "
        "`resource.getrusage(RUSAGE_SELF).ru_maxrss` (peak resident set) minus the resident "
        "set just before the first step. It counts the optimizer state created at the first "
        "step and whatever a library allocates on first use; tracemalloc is not used because "
        "it cannot see torch's CPU tensors. It is coarse (allocator arenas, lazily loaded "
        "code): at this model size, differences of a few tens of MiB between rows are within "
        "its run-to-run spread. The whole-process peak is higher for TRL mostly because it "
        "imports more (datasets, pandas, pyarrow).",
        "",
        "| step | implementation | peak RSS − RSS before (MiB) | peak RSS of the process (MiB) |",
        "|---|---|---|---|",
    ]
    for key in SOLO:
        impl, kind = key.split(":")
        m = mem[key]
        lines.append(f"| {STEPS[kind]} | {NAMES[impl]} | {m['peak_delta_mib']:.1f} | "
                     f"{m['peak_rss_mib']:.0f} |")
    pf = res["pairs"]["forward:gkd"]
    lp, lt = pf["paced"]["losses"][0], pf["trl"]["losses"][0]
    traj_p = pf["paced"]["losses"]
    traj = [abs(a - b) for a, b in zip(traj_p, pf["trl"]["losses"])]
    lines += [
        "",
        "## Loss values",
        "",
        "In the timed runs, the first off-policy step starts from identical weights on identical "
        f"tokens (equal lengths), so its loss must agree: paced {lp:.7f}, GKD {lt:.7f} "
        f"(|diff| {fmt_e(abs(lp - lt))}). Both then take the same AdamW steps on the same "
        f"batch: over all {len(traj)} steps the two loss trajectories differ by at most "
        f"{fmt_e(max(traj))} (from {traj_p[0]:.4f} to {traj_p[-1]:.4f}).",
        "",
        "On identical inputs, the same student and teacher modules. Off-policy: the references "
        "cut to 4–32 tokens (+ eos), so sequence lengths differ; on-policy: student samples, "
        "every other one ended early by an eos followed by junk tokens that the masking must "
        "drop (GKD's own `generate_on_policy_outputs` masks them; a stub returns the samples "
        "from `generate`).",
        "",
        "| inputs | TRL | paced, as distill_step reduces | paced, token mean | "
        "|TRL − paced token mean| | max |Δ grad|, token mean |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("off_policy_forward", "off-policy forward KL (GKD compute_loss)"),
                       ("on_policy_reverse", "on-policy reverse KL (GKD compute_loss)")):
        x = lo[key]
        lines.append(f"| {label} | {x['gkd']:.7f} | {x['paced_as_trainer']:.7f} | "
                     f"{x['paced_token_mean']:.7f} | "
                     f"{fmt_e(abs(x['gkd'] - x['paced_token_mean']))} | "
                     f"{fmt_e(x['grad_max_abs_diff'])} (grad norm {x['grad_norm']:.3f}) |")
    x = lo["on_policy_reverse"]
    lines.append(f"| on-policy reverse KL (DistillationTrainer _compute_loss) | "
                 f"{x['distill']:.7f} | {x['paced_as_trainer']:.7f} | "
                 f"{x['paced_token_mean']:.7f} | "
                 f"{fmt_e(abs(x['distill'] - x['paced_token_mean']))} | – |")
    lines += ["", "The loss functions alone on the same logits "
              "(`GKDTrainer.generalized_jsd_loss` vs `losses.generalized_jsd`, token mean):", "",
              "| beta, temperature | TRL | paced | |diff| |", "|---|---|---|---|"]
    for k, (a, b) in lo["jsd_function"].items():
        lines.append(f"| {k} | {a:.7f} | {b:.7f} | {fmt_e(abs(a - b))} |")
    worst = max([abs(a - b) for a, b in lo["jsd_function"].values()]
                + [abs(lo[k]["gkd"] - lo[k]["paced_token_mean"])
                   for k in ("off_policy_forward", "on_policy_reverse")]
                + [abs(x["distill"] - x["paced_token_mean"]), abs(lp - lt)])
    div = lo["gkd_on_policy_divisor"]
    lines += [
        "",
        f"Largest disagreement where the definitions agree: {fmt_e(worst)}.",
        "",
        "## Where the definitions differ",
        "",
        "- **Divergence**: the same. TRL's beta = 0 is KL(teacher ‖ student) and beta = 1 is "
        "KL(student ‖ teacher), exact over the vocabulary per token, like `token_kl` forward / "
        "reverse and `generalized_jsd(beta)` (paced follows TRL's endpoint convention).",
        "- **Reduction**: TRL sums the per-token divergence over every scored token of the batch "
        "and divides by the number of scored tokens (GKD's `batchmean`, or `num_items_in_batch` "
        "inside `train()`; DistillationTrainer the same). paced averages per sequence "
        "(`reduction='mean'`), then `weighted_loss` takes sum_i w_i L_i / normaliser, here "
        "w_i = 1 and normaliser = B: a mean of per-sequence means, so a short completion "
        "weighs as much as a long one (PACED weights problems, not tokens). The two agree when "
        "every sequence scores the same number of tokens (the timed off-policy batch) and "
        "differ otherwise (the 'as distill_step reduces' column); `token_kl(..., "
        "reduction='sum')` with normaliser = number of scored tokens reproduces TRL.",
        "- **GKD's on-policy divisor** (a TRL quirk, not a definition): inside "
        "`trainer.train()`, transformers counts `num_items_in_batch` from the collated "
        "*dataset* labels before GKDTrainer replaces them with the student's samples, and "
        "GKD's loss divides by it. Measured in one real GKD on-policy step on the cut "
        f"references: divided by {div['num_items_in_batch']} (the dataset's "
        f"{div['dataset_tokens']} completion tokens) while the samples scored "
        f"{div['scored_sample_tokens']} tokens, so that loss (and its gradient) is "
        f"{div['scored_sample_tokens'] / div['num_items_in_batch']:.2f}x the token mean. In "
        "the timed runs every completion has the maximum length and the two counts agree. "
        "DistillationTrainer recounts after generation (TRL fixed it there in "
        "huggingface/trl#6478; GKD's normalisation is trl#4719 / #6006). The loss table calls "
        "GKD's "
        "`compute_loss` with `num_items_in_batch=None` (batchmean) to compare definitions.",
        "- **Temperature**: GKDTrainer's `temperature` only affects sampling; its loss is always "
        "at temperature 1. DistillationTrainer and paced divide both logits by the temperature "
        "in the loss (paced's `loss.temperature` is separate from `rollouts.temperature`). None "
        "of them multiplies by T². Here every temperature is 1.",
        "- **Masking**: the same tokens. All score the positions whose next token is a "
        "completion token, the first eos included, nothing after it; prompt and padding are "
        "excluded. TRL left-pads and passes an attention mask; paced right-pads without one "
        "(causal attention); the logits differ only by float rounding (RoPE depends on "
        "relative positions).",
        "- **Precision / memory defaults**: TRL defaults to bf16 autocast and gradient "
        "checkpointing (`bf16=True`, `gradient_checkpointing=True`); both are switched off "
        "here for equal work.",
        "",
    ]
    return "\n".join(lines)


def plugin_report(res: dict, args) -> str:
    """The plug-in's section: its step against plain TRL's at the same kept prompts."""
    x, raw = res["plugin_timing"], res["plugin"]
    c, w = x["cpu"], x["wall"]  # summarised with paced = plain TRL, trl = the plug-in
    B = args.batch
    return "\n".join([
        "## PACED inside TRL: the plug-in's step against plain TRL's",
        "",
        f"`paced_train.integrations.trl.PacedDistillationTrainer` on a pool of {2 * B} prompts "
        f"whose pass-rate table gives {B} of them weight 0, against plain "
        f"`trl.DistillationTrainer` on the {B} kept prompts: the same prompts every step (the "
        f"plug-in drew {len(raw['plugin_prompts'])} distinct ones), on-policy reverse KL with "
        "generation, the pair rows' settings. Steps alternate in one process (plain, plug-in, "
        f"plug-in, plain, ...; {args.repeats} of each after {args.warmup} warm-up steps), each "
        "driven by hand "
        "as Trainer's inner loop runs it (next batch from the data loader, where the plug-in's "
        "sampler reads the weights; training_step with generation; clipping; AdamW; scheduler; "
        "zero_grad). CPU time on one thread.",
        "",
        "| step | plain TRL ms / step, CPU (wall) | plug-in ms / step, CPU (wall) | "
        "**plug-in / plain, CPU** | plug-in / plain, wall | plug-in / plain, CPU minima | "
        "scored tokens / step, plain · plug-in |",
        "|---|---|---|---|---|---|---|",
        f"| {STEPS['reverse']} | {1e3 * c['paced_median_s']:.1f} ({1e3 * w['paced_median_s']:.1f})"
        f" | {1e3 * c['trl_median_s']:.1f} ({1e3 * w['trl_median_s']:.1f}) | "
        f"**{c['ratio_median']:.3f}** | {w['ratio_median']:.3f} | {c['ratio_of_minima']:.3f} | "
        f"{x['paced_scored']:.0f} · {x['trl_scored']:.0f} |",
        "",
        "What the plug-in adds per step: the sampler's weight look-up over the pool (one "
        "`problem_weights` call), one `gather_object` of the batch's weights (a no-op in one "
        "process), the per-sequence reduction of TRL's per-token divergence and "
        "`losses.weighted_loss`.",
        ""])


def verdict(res: dict) -> str:
    rows, worst = [], float("inf")
    for key in PAIRS:
        c, w = res["timing"][key]["cpu"], res["timing"][key]["wall"]
        rows.append(f"{key} {c['ratio_median']:.2f}x (wall {w['ratio_median']:.2f}x)")
        worst = min(worst, c["ratio_median"])
    met = "Met" if worst >= 1.5 else "Not met"
    on = [res["timing"][k]["cpu"]["ratio_median"] for k in PAIRS if k.startswith("reverse")]
    plug = res["plugin_timing"]["cpu"]["ratio_median"]
    return "\n".join([
        "## Goals", "",
        "| goal | measured (CPU time, median of step pairs) | target | |",
        "|---|---|---|---|",
        f"| paced_train's on-policy reverse-KL step against TRL's (TRL / paced) | "
        f"{min(on):.2f}x (GKDTrainer {on[0]:.2f}x, DistillationTrainer {on[1]:.2f}x) | "
        f">= 1.5x | {'met' if min(on) >= 1.5 else '**not met**'} |",
        f"| the PACED plug-in's step against plain TRL's at the same kept prompts (plug-in / "
        f"TRL) | {plug:.3f}x | <= 1.05x | {'met' if plug <= 1.05 else '**not met**'} |",
        "",
        f"paced's step at least 1.5x faster at equal work, all rows: {met}. TRL / paced CPU "
        f"time per step: {'; '.join(rows)}.", ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=12, help="timed steps of each side")
    ap.add_argument("--mem-steps", type=int, default=3, help="steps of the memory runs")
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--kind", default="", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    quiet()
    threads()
    if args.worker:
        print(MARK + json.dumps(WORKERS[args.worker](args.root, args.kind, args)))
        return
    try:
        import trl  # noqa: F401
    except ImportError:
        raise SystemExit("TRL is not installed here: pip install -e '.[trl]' (or make "
                         "install, whose dev extra includes it)") from None
    t0 = time.perf_counter()
    res: dict = {"versions": versions(), "args": {k: str(v) for k, v in vars(args).items()},
                 "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_models(root, args.vocab)
        res["data"] = prepare(root, args)
        res["losses"] = spawn("losses", "", root, args)
        res["pairs"] = {k: spawn("pair", k, root, args) for k in PAIRS}
        res["memory"] = {k: spawn("memory", k, root, args) for k in SOLO}
        res["plugin"] = spawn("plugin", "", root, args)
    res["load_after"] = os.getloadavg()
    res["timing"] = {k: summarise(v, args) for k, v in res["pairs"].items()}
    # "paced" = plain TRL, "trl" = the plug-in: ratio_median is plug-in / plain
    res["plugin_timing"] = summarise({"paced": res["plugin"]["plain"],
                                      "trl": res["plugin"]["plugin"]}, args)
    text = report(res, args) + "\n" + plugin_report(res, args) + "\n" + verdict(res)
    text += f"\nWhole bench: {time.perf_counter() - t0:.0f} s.\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vs_trl.md").write_text(text)
    (args.out / "vs_trl.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
