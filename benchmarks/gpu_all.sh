#!/usr/bin/env bash
# Every GPU figure of docs/benchmarks.md in one command (one device lease), from the repository root:
#
#     OUT=/tmp/bench bash benchmarks/gpu_all.sh                  # every section
#     SECTIONS="train_b2 forward" bash benchmarks/gpu_all.sh     # some
#
# With two GPUs visible the sections run in two lanes at once ($LANE0 on GPU 0: training; $LANE1 on GPU 1:
# forward pass, routed sampling, cold start, publish/fetch), otherwise one after another. Each section has its own
# time limit (T_<section> seconds), so one slow compile cannot take the others down. Logs and JSON lines
# go to $LOGS (default /tmp/bench-logs), packed into $OUT/logs.tgz at the end; the tables are printed again. diffusers must be importable for the
# comparison rows; Kubo ($HDDM_KUBO_BIN, or .devcarry/ipfs.xz unpacked) for publish_fetch. $LADDER / $FWD pick the
# training / forward rows ($XL2_BATCH the DiT-XL/2 training batch, 128; $FWD_ARCHS the forward section's --arch/--batch pairs), $TESTS the pytest arguments of the tests section, $ATT_ARGS the attention section's arguments. On one GPU leave LANE0/LANE1 unset:
# SECTIONS alone chooses (an empty lane runs nothing). The +sm90 rows use $HDDM_SM90_GEMM_LIB, or build the CUTLASS
# kernels on first use (nvcc and the nvidia-cutlass package needed).
set -u
OUT=${OUT:-/tmp/bench}; LOGS=${LOGS:-/tmp/bench-logs}; mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd)
LANE0=${LANE0-"tests train_b2 train_xl2"}                                  # GPU 0
LANE1=${LANE1-"forward gemm layouts norm attention routed_b2 routed_xl2 cold_start publish_fetch"}  # GPU 1
SECTIONS=${SECTIONS:-"$LANE0 $LANE1"}  # LANE0="" / LANE1="": that lane runs nothing
LADDER=${LADDER:-"fp32 eager,bf16 eager,+fused adamw,+compile blocks,+bf16 residual,+cudnn attention,+compile model"}
FWD=${FWD:-"diffusers eager,diffusers compile,diffusers compile+cudnn,hddm eager,hddm compile -gelu,hddm compile,hddm compile+cudnn,hddm compile+cudnn+graphs"}
nvidia-smi --query-gpu=index,name,driver_version,clocks.sm,clocks.max.sm,power.draw,memory.total --format=csv | tee "$LOGS/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$LOGS/gpu.txt"
# power and SM clock once a second for the whole run: efficient kernels can lower the clock the others get
nvidia-smi dmon -s pc -d 1 -o T > "$LOGS/dmon.txt" 2>&1 &
DMON=$!
python3 -c "import diffusers; print('diffusers', diffusers.__version__)" 2>&1 | tail -1 | tee -a "$LOGS/gpu.txt"

run_section() {  # run_section NAME: one section, under its time limit, logged
  local name=$1 limit; limit=$(eval echo "\${T_$name:-420}")
  echo "=== $name start $(date -u +%T) (limit ${limit}s, GPU ${CUDA_VISIBLE_DEVICES:-all})"
  case $name in
    tests) cmd=(python3 -m pytest -q -p no:cacheprovider ${TESTS:- tests/models/test_fast_paths.py tests/models/test_cublaslt.py
                tests/models/test_fused_norm_train.py tests/train/test_data.py}) ;;
    gemm) cmd=(python3 benchmarks/gemm_epilogues.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256
               --json "$LOGS/gemm.jsonl") ;;
    layouts) cmd=(python3 benchmarks/gemm_layouts.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256
                  --json "$LOGS/layouts.jsonl") ;;
    attention) cmd=(python3 benchmarks/attention_heads.py ${ATT_ARGS:---arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256
                    --pad 80 --pad 96 --pad 128} --json "$LOGS/attention.jsonl") ;;
    norm) cmd=(python3 benchmarks/norm_bandwidth.py --arch DiT-XL/2 --batch 128 --arch DiT-B/2 --batch 256
               --json "$LOGS/norm.jsonl") ;;
    train_b2) cmd=(python3 benchmarks/train_throughput.py --arch DiT-B/2 --batch 256 --baseline-batch 64 --steps 10
                   --warmup 3 --variants "$LADDER" --profile --json "$LOGS/train.jsonl") ;;
    train_xl2) cmd=(python3 benchmarks/train_throughput.py --arch DiT-XL/2 --batch ${XL2_BATCH:-128} --baseline-batch 32
                    --steps 6 --warmup 3 --variants "$LADDER" --profile --json "$LOGS/train.jsonl") ;;
    forward) cmd=(python3 benchmarks/expert_forward.py ${FWD_ARCHS:---arch DiT-B/2 --batch 256 --arch DiT-XL/2 --batch 128}
                  --variants "$FWD" --warmup 3 --iters 20 --profile --json "$LOGS/forward.jsonl") ;;
    routed_b2) cmd=(python3 benchmarks/routed_sampling.py --arch DiT-B/2 --batch 256 --iters 8 --modes compiled
                    --attention cudnn --json "$LOGS/routed.jsonl") ;;
    routed_xl2) cmd=(python3 benchmarks/routed_sampling.py --arch DiT-XL/2 --batch 64 --iters 6 --modes compiled
                     --attention cudnn --no-offload --json "$LOGS/routed.jsonl") ;;
    cold_start) cmd=(python3 benchmarks/cold_start.py --arch DiT-XL/2 --experts 8 --routed 2 --steps 30 --device cuda
                     --dtype bf16 --repeat 3 --out "$LOGS/cold_start" --workdir /tmp) ;;
    publish_fetch) cmd=(python3 benchmarks/publish_fetch.py --size-mib 1024 --repeat 3 --out "$LOGS/publish_fetch"
                        --workdir /tmp) ;;
    *) echo "unknown section $name"; return ;;
  esac
  timeout -k 5 "$limit" "${cmd[@]}" >"$LOGS/$name.log" 2>&1
  local rc=$?
  echo "=== $name end $(date -u +%T) rc=$rc"
}

lane() { for s in "$@"; do [[ " $SECTIONS " == *" $s "* ]] && run_section "$s"; done; }
if [ -z "${HDDM_KUBO_BIN:-}" ] && [ -f .devcarry/ipfs.xz ]; then
  xz -dc .devcarry/ipfs.xz >/tmp/ipfs && chmod +x /tmp/ipfs && export HDDM_KUBO_BIN=/tmp/ipfs
fi
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then
  CUDA_VISIBLE_DEVICES=0 lane $LANE0 > "$LOGS/lane0.txt" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 lane $LANE1 > "$LOGS/lane1.txt" 2>&1 &
  wait
  cat "$LOGS/lane0.txt" "$LOGS/lane1.txt"
else
  lane $LANE0 $LANE1
fi
for s in $SECTIONS; do  # the tables again, for the reply's tail
  [ -f "$LOGS/$s.log" ] || continue
  echo "--- $s"; grep -v '^{' "$LOGS/$s.log" | grep -v -i "warn\|^ *$" | tail -n 40
done
kill "$DMON" 2>/dev/null
tar czf "$OUT/logs.tgz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")"
