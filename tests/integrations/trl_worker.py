"""One PacedDistillationTrainer run for the two-process test (test_trl_distributed.py):

    python -m torch.distributed.run --nproc_per_node 2 trl_worker.py STUDENT TEACHER OUT 2

trains 3 steps on 16 equal-length prompts with a global generation batch of 4 (per-process
batch 2 under two processes, 4 in one), greedy generation (so the completions do not depend
on per-process random streams), a pass-rate refresh at steps 0 and 2 (CountingReward: the
counts do not depend on how the rollouts are split), SGD without clipping. Process 0 writes
OUT/result.pt: each step's generation batch, gradient (after DDP's all-reduce) and logged
loss, and the final pass-rate table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trl_helpers import CountingReward, args, load, problems, sampled_batches  # noqa: E402


def run(student_dir: str, teacher_dir: str, out: str, per_device: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DistillationConfig

    from paced_train.integrations.trl import PacedDistillationTrainer, PassRateRefresh

    student, tok = load(student_dir)
    teacher, _ = load(teacher_dir)
    cfg = args(DistillationConfig, out, per_device_train_batch_size=per_device, max_steps=3,
               optim="sgd", max_grad_norm=0.0, max_completion_length=4,
               generation_kwargs={"do_sample": False},
               **({"ddp_backend": "gloo"} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {}))
    tr = PacedDistillationTrainer(
        model=student, teacher_model=teacher, args=cfg, processing_class=tok,
        train_dataset=Dataset.from_list(problems(16)),
        refresh=PassRateRefresh(CountingReward(), rollouts=4, every=2, prompts_per_call=4))
    rec: dict = {"batches": sampled_batches(tr), "grads": []}

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            rec["grads"].append(torch.cat([p.grad.flatten().clone()
                                           for p in tr.model.parameters()]))

    tr.add_callback(Record())
    tr.train()
    rec["losses"] = [h["loss"] for h in tr.state.log_history if "loss" in h]
    rec["table"] = tr._paced.table.state()
    rec["world"] = tr.accelerator.num_processes
    if tr.accelerator.is_main_process:
        torch.save(rec, Path(out) / "result.pt")
    return rec


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
