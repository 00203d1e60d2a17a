"""Regenerate the derived request-length traces in melange/scenarios/traces/ (data, deterministic).

- `arena_synthetic.csv`: Chatbot Arena-like lengths. No request-length trace of LMSYS-Chat-1M or
  Chatbot Arena could be shipped here (LMSYS-Chat-1M's licence forbids redistributing the data
  set, and the processed traces we found are not in any source we may copy from), so lengths are
  drawn from log-normal laws whose means are the data set paper's published averages (Zheng et
  al. 2023, arXiv 2309.11998, Table 1: 69.5 tokens per prompt, 214.5 per response). The spreads
  (sigma 1.0 for prompts, 0.8 for responses) are our assumption, not published figures.
- `arena_arxiv_mixed.csv`: the paper's mixed workload's lengths: every Arena-like row and a
  quarter as many arXiv summarization rows (so 80 % / 20 % of requests), for `lengths: trace`.

    python scripts/make_traces.py [OUT_DIR]      # default: melange/scenarios/traces
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT / "melange" / "scenarios" / "traces"
ARXIV = "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
ROWS = 20_000
PROMPT_MEAN, PROMPT_SIGMA = 69.5, 1.0  # tokens; mean published, sigma assumed
RESPONSE_MEAN, RESPONSE_SIGMA = 214.5, 0.8


def lognormal_tokens(mean: float, sigma: float, n: int, rng: np.random.Generator, hi: int) -> np.ndarray:
    """`n` whole token counts in [1, hi] from a log-normal law with the given mean."""
    mu = np.log(mean) - sigma**2 / 2  # E[X] = exp(mu + sigma^2 / 2)
    return np.clip(np.rint(rng.lognormal(mu, sigma, n)), 1, hi).astype(np.int64)


def arena(rng: np.random.Generator) -> pd.DataFrame:
    """The Arena-like trace (see the module docstring)."""
    return pd.DataFrame({"input_tokens": lognormal_tokens(PROMPT_MEAN, PROMPT_SIGMA, ROWS, rng, 3999),
                         "output_tokens": lognormal_tokens(RESPONSE_MEAN, RESPONSE_SIGMA, ROWS, rng, 2047)})


def main(out: Path) -> None:
    """Write both derived traces into `out`."""
    chat = arena(np.random.default_rng(0))
    chat.to_csv(out / "arena_synthetic.csv", index=False)
    arxiv = pd.read_csv(TRACES / ARXIV)
    pick = np.sort(np.random.default_rng(1).choice(len(arxiv), ROWS // 4, replace=False))
    summ = pd.DataFrame({"input_tokens": arxiv["num_prefill_tokens"].to_numpy()[pick],
                         "output_tokens": arxiv["num_decode_tokens"].to_numpy()[pick]})
    pd.concat([chat, summ]).to_csv(out / "arena_arxiv_mixed.csv", index=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else TRACES)
