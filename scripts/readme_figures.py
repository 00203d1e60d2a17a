"""Regenerate the README's slice-factor figure and claim (docs/cost_vs_slice_factor.png, docs/figures.json).

    python scripts/readme_figures.py

The README's "Why a mix" paragraph quotes `claim()`'s sentence; tests/test_readme.py re-solves the
sweep and checks that the README says exactly that, so the figure and the text cannot drift.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO, RATE = "mixed-40ms", 32.0
FACTORS = [1, 2, 4, 8, 16, 32, "continuous"]


def costs() -> dict[str, float]:
    """The solver's $/h at each slice factor (the sweep `melange sweep mixed-40ms --slice-factor
    1,2,4,8,16,32,continuous --rate 32`, solve only)."""
    from melange.study import LocalExecutor, Sweep, run_sweep

    sweep = Sweep.create(SCENARIO, {"slice_factor": FACTORS, "rate": [RATE]})
    with tempfile.TemporaryDirectory() as tmp:
        table = run_sweep(sweep, tmp, executor=LocalExecutor(1))
    return {str(r["slice_factor"]): round(float(r["cost"]), 3) for r in table.to_dict("records")}


def claim(c: dict[str, float]) -> str:
    """The README sentence for these costs."""
    whole, at8, limit = c["1"], c["8"], c["continuous"]
    return (f"{SCENARIO} at {RATE:g} req/s: ${whole:.2f}/h with whole buckets, ${at8:.2f}/h at slice factor 8 "
            f"({1 - at8 / whole:.1%} cheaper) and ${limit:.2f}/h in the continuous limit")


def main() -> None:
    """Write the figure and docs/figures.json, print the sentence."""
    import pandas as pd

    from melange.plots import cost_vs_slice_factor

    c = costs()
    frame = pd.DataFrame({"slice_factor": list(c), "cost": list(c.values())})
    cost_vs_slice_factor(frame, ROOT / "docs" / "cost_vs_slice_factor", title=f"{SCENARIO}, {RATE:g} req/s")
    (ROOT / "docs" / "cost_vs_slice_factor.svg").unlink(missing_ok=True)  # the README shows the PNG
    (ROOT / "docs" / "figures.json").write_text(json.dumps({"slice_factor": c, "claim": claim(c)}, indent=1) + "\n")
    print(claim(c))


if __name__ == "__main__":
    sys.exit(main())
