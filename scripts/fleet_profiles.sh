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
