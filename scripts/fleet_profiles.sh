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
  # Llama-2-7B at TP 1 and 2: the production SLO (two-models.yaml; TP 1 files are the
  # chat-120ms-today scenario's), the interactive class (GuideLLM's chat SLO: TTFT <= 200 ms,
  # ITL <= 50 ms at p99) and the batch class (e2e <= 5 min) of chat-batch.yaml.
  for g in H100 A100-80GB A10G L4; do
    for n in 1 2; do
      name=$g; [[ $n == 1 ]] || name=${n}x$g
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
  done
fi
