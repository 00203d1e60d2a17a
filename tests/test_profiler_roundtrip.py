"""Round trip on 127.0.0.1: profiling `melange emulate --speedup K` recovers the sim-profile.

The emulator runs the simulator's own engine on the wall clock, so a measured profile of it
(times scaled back by K) must match `build_profile` for the same GPU, model, SLO and grid.
The emulator runs in its own process (`melange emulate`), as a real server would. Buckets with
outputs of 16-31 tokens: their SLO slack (120 ms per token minus a ~60 ms L4 step) is seconds of
GPU time, so at 10x the wall-clock jitter of a shared 2-core machine (tens of ms, i.e. hundreds
of GPU ms) stays well inside it; 8-15-token buckets have half that and were seen to fail there.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.core import BucketGrid, Slo
from melange.perf import build_profile
from melange.profiler.client import Target
from melange.profiler.launcher import ServerProcess
from melange.profiler.run import measure_point
from melange.profiler.search import SearchSettings
from melange.rate_search import Trial

GPU, MODEL = "L4", "llama-2-7b"
GRID = BucketGrid((32, 64, 256), (8, 16, 32))
SLO = Slo(120, attainment=0.9)
SPEEDUP = 10.0


@contextmanager
def emulator(speedup: float = SPEEDUP, *extra: str):
    """`melange emulate` in a subprocess on a free loopback port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = os.path.join(os.path.dirname(sys.executable), "melange")
    command = shlex.join([exe, "emulate", "--gpu", GPU, "--model", MODEL, "--port", str(port),
                          "--speedup", str(speedup), *extra])
    with ServerProcess(command, f"http://127.0.0.1:{port}", ready_timeout_s=30, grace_s=10) as server:
        yield server.url


def sim_rates(grid: BucketGrid = GRID) -> np.ndarray:
    """The sim-profile of the same GPU, model, SLO and grid (build_profile's own search: trials long
    enough for the acceptance rule, then a longer confirmation)."""
    return build_profile(GPU, MODEL, SLO, grid, cache=False, workers=1).max_rate


def test_emulator_knee_sits_where_the_sim_profile_puts_it():
    # Bucket (1, 1): a point well under the sim-profile's max rate passes, one well over fails.
    rate = float(sim_rates(BucketGrid(GRID.in_edges[1:], GRID.out_edges[1:]))[0, 0])  # bucket (1, 1) alone
    settings = SearchSettings()
    with emulator(2 * SPEEDUP) as url:
        target = Target(url, MODEL, time_scale=2 * SPEEDUP, timeout_s=30, gpu=GPU)
        under, _ = asyncio.run(measure_point(target, GRID, SLO, settings, 1, 1, Trial(0.5 * rate)))
        over, _ = asyncio.run(measure_point(target, GRID, SLO, settings, 1, 1, Trial(2.0 * rate)))
    print("under", under, "over", over)
    assert under["passed"], under
    assert not over["passed"], over
    assert under["errors"] == over["errors"] == 0


@pytest.mark.slow
def test_profile_of_the_emulator_matches_the_sim_profile_within_15_percent(tmp_path):
    # build_profile's trials are long enough for the acceptance rule (short 300-request trials used
    # to put the sim-profile 10-20 % high: L4 here, 7.94 and 6.51 req/s against 7.12 and 5.85).
    expected = sim_rates()
    out = tmp_path / "measured.yaml"
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(yaml.safe_dump({"input_edges": list(GRID.in_edges), "output_edges": list(GRID.out_edges)}))
    with emulator() as url:
        res = CliRunner().invoke(cli, ["profile", "--url", url, "--gpu", GPU, "--model", MODEL, "--slo-tpot", "120ms",
                                       "--attainment", "0.9", "--grid", str(grid_file), "--time-scale", str(SPEEDUP),
                                       "--buckets", "0,1;1,1", "--rel-tol", "0.05", "--quiet", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    measured = np.array(doc["max_rate"])
    print(f"measured {measured.round(3).tolist()} sim-profile {expected.round(3).tolist()}")
    for i, j in ((0, 1), (1, 1)):
        assert measured[i, j] == pytest.approx(expected[i, j], rel=0.15), (i, j, measured, expected)
    assert doc["source"] == "measured" and "step_model" in doc
