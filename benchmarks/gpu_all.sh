#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one go (one device lease): logs and JSON lines under $OUT.
# Each section has its own time limit, so one slow compile cannot take the others down.
set -u
OUT=${OUT:-/tmp/bench}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"
L="fp32 eager,tf32 eager,bf16 eager,+fused adamw,+compile blocks,+autotune blocks"
sec() { local t=$1 name=$2; shift 2; echo "=== $name $(date -u +%FT%TZ)"; timeout -k 5 "$t" "$@" 2>&1 | tee "$OUT/$name.log"; }
sec ${T1:-130} train_b2 python3 benchmarks/train_throughput.py --arch DiT-B/2 --batch 256 --baseline-batch 64 --steps 10 --warmup 3 --variants "$L" --json "$OUT/train.jsonl"
sec ${T2:-150} train_xl2 python3 benchmarks/train_throughput.py --arch DiT-XL/2 --batch 128 --baseline-batch 32 --steps 6 --warmup 3 --variants "${L/tf32 eager,/}" --json "$OUT/train.jsonl"
sec ${T3:-140} forward python3 benchmarks/expert_forward.py --arch DiT-B/2 --batch 256 --arch DiT-XL/2 --batch 128 --variants "diffusers eager,diffusers compile,hddm eager,hddm compile,hddm autotune+graphs" --warmup 3 --iters 20 --json "$OUT/forward.jsonl"
sec ${T4:-90} routed_b2 python3 benchmarks/routed_sampling.py --arch DiT-B/2 --batch 256 --iters 8 --json "$OUT/routed.jsonl"
sec ${T5:-70} routed_xl2 python3 benchmarks/routed_sampling.py --arch DiT-XL/2 --batch 64 --iters 6 --modes compiled --no-offload --json "$OUT/routed.jsonl"
echo "=== done $(date -u +%FT%TZ)"
