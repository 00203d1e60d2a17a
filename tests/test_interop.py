"""Interop with the tools people run (issue 17): GuideLLM's mock server profiled by `melange
profile --url`. Skips unless GuideLLM is installed: `guidellm` on PATH, or $MELANGE_GUIDELLM
naming its executable (e.g. in a separate virtual environment: its dependencies are heavy)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

from melange.cli import cli

GUIDELLM = os.environ.get("MELANGE_GUIDELLM") or shutil.which("guidellm")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not GUIDELLM, reason="GuideLLM is not installed")]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_profiling_guidellms_mock_server_recovers_its_latencies(tmp_path):
    """GuideLLM's mock server with a 150 ms TTFT and 10 ms ITL: the profiler measures both within
    10 ms and 1.5 ms (medians at the lightest point; 7 ms and 0.8 ms over on this 2-core machine
    while a study ran on both cores, so the bound leaves room for a busy CI machine)."""
    port = _port()
    server = subprocess.Popen([GUIDELLM, "mock-server", "--host", "127.0.0.1", "--port", str(port), "--model",
                               "llama-2-7b", "--ttft-ms", "150", "--itl-ms", "10"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("GuideLLM's mock server did not start")
                time.sleep(0.5)
        grid = tmp_path / "grid.yaml"
        grid.write_text("input_edges: [8, 16]\noutput_edges: [16, 24]\n")
        store = tmp_path / "run.jsonl"
        res = CliRunner().invoke(cli, ["profile", "--url", url, "--gpu", "A10G", "--model", "llama-2-7b",
                                       "--api", "chat", "--slo-tpot", "120ms", "--slo-ttft", "1s", "--attainment",
                                       "0.9", "--grid", str(grid), "--rel-tol", "0.5", "--min-window", "5s",
                                       "--confirm-requests", "200", "--max-requests", "400", "--quiet",
                                       "--store", str(store), "-o", str(tmp_path / "p.yaml")])
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert res.exit_code == 0, res.output
    points: dict[str, list[dict]] = {}  # records by the point (rate) they belong to
    current = None
    for line in map(json.loads, store.read_text().splitlines()):
        if line.get("type") == "start":
            current = points.setdefault(line["rate"], [])
        elif line.get("type") == "record" and line["error"] is None and current is not None:
            current.append(line)
    # The lightest point: the mock server's own latencies, not its single worker's queue.
    ttft = min(np.median([r["ttft_s"] for r in recs]) for recs in points.values() if recs)
    itl = np.median([g for recs in points.values() for r in recs for g in (r["itl_s"] or [])])
    assert abs(ttft - 0.150) < 0.010 and abs(itl - 0.010) < 0.0015, (ttft, itl)
