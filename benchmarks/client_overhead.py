"""How much the profiler's client adds to what it measures, against known latencies.

Starts `melange emulate` with fixed latencies (TTFT and inter-token gap, no engine) in its own
process, sends Poisson traffic at 200 req/s through the profiler's client, and compares:

- ttft_error_ms: median measured TTFT (from the actual send) minus the configured TTFT;
- itl_error_ms: median measured inter-token gap minus the configured gap;
- achieved_rate_ratio: requests actually sent per second over the scheduled rate of the same
  requests (1.0 = the client kept pace; vLLM #21104 saw 183 of 200);
- p99_send_lag_ms: 99th percentile of actual minus scheduled send time.

Targets: errors under 2 ms, ratio within 2 % of 1, lag under 5 ms. The last line is one JSON
object. Usage: python benchmarks/client_overhead.py [--rate 200] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import sys
import time

import numpy as np

from melange.profiler.client import Job, Target, run_jobs
from melange.profiler.launcher import ServerProcess
from melange.profiler.schedule import send_times


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--ttft-ms", type=float, default=50.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    port = free_port()
    melange = os.path.join(os.path.dirname(sys.executable), "melange")
    command = shlex.join([melange, "emulate", "--port", str(port), "--fixed-ttft", f"{args.ttft_ms}ms",
                          "--fixed-itl", f"{args.itl_ms}ms"])
    with ServerProcess(command, f"http://127.0.0.1:{port}", ready_timeout_s=30, grace_s=10) as server:
        url = server.url
        rng = np.random.default_rng(args.seed)
        times = send_times(args.rate, args.requests, rng)
        jobs = [Job(k, float(t), 32, args.output_tokens) for k, t in enumerate(times)]
        target = Target(url, "llama-2-7b", timeout_s=30.0)
        asyncio.run(run_jobs(target, jobs[:50]))  # warm up connections and code paths
        start = time.perf_counter()
        records = asyncio.run(run_jobs(target, jobs))
        wall = time.perf_counter() - start

    ok = [r for r in records if r.error is None]
    sched = np.array([r.arrival_s for r in records])
    sent = np.array([r.sent_s for r in records])
    lag = sent - sched
    ttft_actual = np.array([r.ttft_s - (r.sent_s - r.arrival_s) for r in ok])
    itl = np.concatenate([np.asarray(r.itl_s) for r in ok if r.itl_s])
    ratio = (sched.max() - sched.min()) / (sent.max() - sent.min())
    result = {
        "requests": len(records), "failed": len(records) - len(ok), "rate": args.rate,
        "ttft_error_ms": round(float(np.median(ttft_actual)) * 1000 - args.ttft_ms, 3),
        "itl_error_ms": round(float(np.median(itl)) * 1000 - args.itl_ms, 3),
        "achieved_rate_ratio": round(float(ratio), 4),
        "p99_send_lag_ms": round(float(np.percentile(lag, 99)) * 1000, 3),
        "p50_send_lag_ms": round(float(np.percentile(lag, 50)) * 1000, 3),
        "wall_s": round(wall, 2), "cpus": os.cpu_count(),
    }
    print(f"{len(records)} requests at {args.rate:g} req/s, {len(ok)} ok, {wall:.1f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
