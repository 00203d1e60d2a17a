#!/usr/bin/env bash
# Sim-profiles of the built-in fleet scenarios (two-models.yaml, chat-batch.yaml): every
# memory-feasible (GPU × TP) instance of the paper's four GPU types, on the 4k grid of the
# Llama-2 scenarios. Run from the repository root; 1-10 minutes per file on two cores.
set -euo pipefail
GRID=melange/scenarios/workloads/chat-4k.yaml
P=melange/scenarios/profiles
common=(--grid $GRID --max-model-len 4998 --max-num-batched-tokens 2048 --workers 2 --quiet)
part=${1:-all}
if [[ $part == all || $part == 70b ]]; then
  for g in 2xH100 4xH100 8xH100 2xA100-80GB 4xA100-80GB 8xA100-80GB 8xL4 8xA10G; do
    out=$P/llama-2-70b/$g-tpot120-decode-ttft3s.yaml
    [[ -f $out ]] || nice -n 19 melange profile --simulate --gpu $g --model llama-2-70b --slo-tpot 120ms \
      --slo-definition decode --slo-ttft 3s "${common[@]}" -o $out
  done
fi
if [[ $part == all || $part == 7b ]]; then
  # Llama-2-7B at the production SLO (two-models.yaml; the TP 1 files are the chat-120ms-today
  # scenario's), the interactive class (GuideLLM's chat SLO: TTFT <= 200 ms, ITL <= 50 ms at p99)
  # and the batch class (e2e <= 5 min) of chat-batch.yaml; TP 1 on the four GPUs and TP 2 on H100
  # (a batch profile takes ~8 minutes: each trial's SLO bound is 5 minutes).
  for name in 2xH100 A100-80GB A10G L4 H100; do
    out=$P/llama-2-7b/$name-tpot120-decode-ttft3s.yaml
    [[ -f $out ]] || nice -n 19 melange profile --simulate --gpu $name --model llama-2-7b --slo-tpot 120ms \
      --slo-definition decode --slo-ttft 3s "${common[@]}" -o $out
    out=$P/llama-2-7b/$name-interactive-tpot50-ttft200ms.yaml
    [[ -f $out ]] || nice -n 19 melange profile --simulate --gpu $name --model llama-2-7b --slo-tpot 50ms \
      --slo-definition decode --slo-ttft 200ms "${common[@]}" -o $out
    out=$P/llama-2-7b/$name-batch-e2e300s.yaml
    [[ -f $out ]] || nice -n 19 melange profile --simulate --gpu $name --model llama-2-7b --slo-e2e 300s \
      "${common[@]}" -o $out
  done
fi
