"""Regenerate the public measurement set in melange/scenarios/measurements/ from the sources.

    python scripts/extract_measurements.py --vidur PATH/TO/vidur [--lambda PATH/TO/vllm-benchmark]

- Vidur (github.com/microsoft/vidur, MIT): `data/profiling/compute/{a100,h100,a40}/<model>/mlp.csv`,
  per-layer CUDA times of every non-attention operator of one transformer layer, by tokens in the
  step and tensor-parallel degree. We keep the medians summed over the layer's operators
  (norms, QKV and output projections, rope, gate/up, activation, down, residual add) times the
  model's layers, for deployable configurations (weights fit in 90 % of one GPU's memory; 7-8B
  models at TP 1-2, 70B at TP 2-8).
- Lambda (github.com/LambdaLabsML/vllm-benchmark): `results/prompt_N/1x<GPU>/<model>_tp1_len<L>.json`,
  vLLM `benchmark_serving.py` results. We keep the August 2024 runs (vLLM v0.5.4, one step per
  token; the September re-runs used multi-step scheduling, which the simulator does not model).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent.parent / "melange" / "scenarios" / "measurements"
VIDUR_GPUS = {"a100": "A100-80GB-SXM", "h100": "H100", "a40": "A40"}
VIDUR_MODELS = {"meta-llama/Llama-2-7b-hf": ("llama-2-7b", 32, (1, 2)),
                "meta-llama/Meta-Llama-3-8B": ("llama-3-8b", 32, (1, 2)),
                "meta-llama/Llama-2-70b-hf": ("llama-2-70b", 80, (2, 4, 8))}
GPU_MEMORY_GB = {"a100": 80, "h100": 80, "a40": 48}
WEIGHTS_GB = {"llama-2-7b": 13.5, "llama-3-8b": 16.1, "llama-2-70b": 138.0}
OPS = ("input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj", "post_attention_layernorm",
       "mlp_up_proj", "mlp_act", "mlp_down_proj", "add")
TOKENS = (1, 2, 4, 8, 16, 32, 64, 96, 128, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
LAMBDA_GPUS = {"1xA100-80GB-SXM": "A100-80GB-SXM", "1xH100-80GB-SXM": "H100"}
LAMBDA_MODELS = {"mistralai/Mistral-7B-Instruct-v0.3": "mistral-7b",
                 "meta-llama/Meta-Llama-3-8B-Instruct": "llama-3-8b"}
LAMBDA_KEYS = ("date", "duration", "completed", "total_input_tokens", "total_output_tokens",
               "output_throughput", "median_ttft_ms", "mean_ttft_ms", "mean_tpot_ms", "median_tpot_ms",
               "mean_itl_ms", "input_lens", "output_lens", "ttfts")


def vidur_rows(root: Path) -> pd.DataFrame:
    """One row per (GPU, model, TP, tokens): the layer stack's non-attention time, ms."""
    rows = []
    for device, gpu in VIDUR_GPUS.items():
        for hf, (model, layers, tps) in VIDUR_MODELS.items():
            path = root / "data" / "profiling" / "compute" / device / hf / "mlp.csv"
            if not path.is_file():
                continue
            table = pd.read_csv(path)
            for tp in tps:
                if WEIGHTS_GB[model] / tp > 0.9 * GPU_MEMORY_GB[device]:
                    continue  # would not fit: nobody runs it
                for n in TOKENS:
                    hit = table[(table.num_tensor_parallel_workers == tp) & (table.num_tokens == n)]
                    if hit.empty:
                        continue
                    per_layer = sum(float(hit.iloc[0][f"time_stats.{op}.median"]) for op in OPS)
                    rows.append({"gpu": gpu, "model": model, "tp": tp, "tokens": n,
                                 "ms": round(per_layer * layers, 4),
                                 "source": f"vidur:{device}/{hf}/mlp.csv"})
    return pd.DataFrame(rows)


def lambda_runs(root: Path) -> list[dict]:
    """The August 2024 (vLLM v0.5.4) one-GPU BF16 runs, with per-request lengths and TTFTs."""
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = head.stdout.strip() if head.returncode == 0 else None
    runs = []
    for path in sorted((root / "results").glob("prompt_*/1x*/*_tp1_len*.json")):
        doc = json.loads(path.read_text())
        gpu, model = LAMBDA_GPUS.get(path.parent.name), LAMBDA_MODELS.get(doc.get("model_id"))
        if gpu is None or model is None or not str(doc.get("date", "")).startswith("202408"):
            continue
        run = {"file": str(path.relative_to(root)), "commit": commit, "gpu": gpu, "model": model,
               "max_model_len": int(path.stem.rsplit("len", 1)[1]), "num_prompts": doc["num_prompts"]}
        run.update({k: doc[k] for k in LAMBDA_KEYS if k in doc})
        runs.append(run)
    return runs


def main() -> None:
    """Write the measurement files from the source checkouts given."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vidur", type=Path, help="a checkout of github.com/microsoft/vidur")
    ap.add_argument("--lambda", dest="lambda_", type=Path, help="a checkout of LambdaLabsML/vllm-benchmark")
    args = ap.parse_args()
    if args.vidur:
        rows = vidur_rows(args.vidur)
        rows.to_csv(OUT / "vidur_kernels.csv", index=False, lineterminator="\n")
        print(f"vidur_kernels.csv: {len(rows)} rows")
    if args.lambda_:
        runs = lambda_runs(args.lambda_)
        text = '{"runs": [\n' + ",\n".join(json.dumps(r) for r in runs) + "\n]}\n"
        (OUT / "lambda_vllm_0.5.4.json").write_text(text)
        print(f"lambda_vllm_0.5.4.json: {len(runs)} runs")


if __name__ == "__main__":
    main()
