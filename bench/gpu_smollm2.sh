#!/usr/bin/env bash
# Issue 20's SmolLM2-135M-Instruct comparison (uniform / Paced / hard filter, reverse-KL
# self-distillation at equal FLOPs) at a larger size on ONE GPU, meant to finish in about
# 10 minutes: all parameters train, batch 32, 240 uniform steps, bf16 autocast (the loop's on
# CUDA), 5 paired seeds, 4 runs at a time on the one device (bench/smollm2_verdict.py's "gpu"
# preset). Not yet run on a GPU: its timings are estimates (PLAN.md); a call stopped by the
# time limit is continued by running it again (finished runs are reused, others resumed).
#
#   bash bench/gpu_smollm2.sh                      # on the GPU machine
#   bash bench/gpu_smollm2.sh --seeds 8 --out runs/x
#   bash bench/gpu_smollm2.sh --tiny --seeds 2     # the same path on CPU, a tiny random Llama
#
# The student is read from the model cache ($PACED_CACHE/models or ~/.cache/paced/models):
# `paced models fetch smollm2` where there is network; on a machine without it, copy
# SmolLM2-135M-Instruct.Q4_1.gguf (98 MB) there and point PACED_CACHE at its parent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
LIMIT=${LIMIT:-570}
tiny=0
for arg in "$@"; do [ "$arg" = "--tiny" ] && tiny=1; done
if [ "$tiny" = 0 ]; then
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: use --tiny for the CPU check')"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
start=$(date +%s)
status=0
timeout "$LIMIT" "$PYTHON" bench/smollm2_verdict.py --preset gpu --seeds 5 --jobs 4 "$@" || status=$?
echo "gpu_smollm2: $(( $(date +%s) - start )) s wall, exit $status" >&2
if [ "$status" = 124 ]; then
  echo "gpu_smollm2: stopped at the ${LIMIT} s limit; run the same command again to continue" >&2
fi
exit "$status"
