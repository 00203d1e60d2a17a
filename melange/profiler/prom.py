"""The emulated server's /metrics: Prometheus text with vLLM's metric names.

vLLM renamed some metrics (V1 engine): `vllm:gpu_cache_usage_perc` became
`vllm:kv_cache_usage_perc` and `vllm:time_per_output_token_seconds` became
`vllm:inter_token_latency_seconds` (plus `vllm:request_time_per_output_token_seconds`).
Dashboards use either, so both spellings are served. Latencies are in the emulated GPU's time
(simulated seconds), whatever the server's --speedup.
"""

from __future__ import annotations

import bisect

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                   5.0, 7.5, 10.0, 20.0, 40.0, 80.0)


class Histogram:
    """A cumulative Prometheus histogram over fixed buckets."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, labels: str) -> list[str]:
        """Exposition lines: HELP, TYPE, one cumulative line per bucket, _sum and _count."""
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        total = 0
        for le, count in zip([*map(repr, self.buckets), "+Inf"], self.counts):
            total += count
            out.append(f'{self.name}_bucket{{{labels},le="{le}"}} {total}')
        out += [f"{self.name}_sum{{{labels}}} {self.sum}", f"{self.name}_count{{{labels}}} {total}"]
        return out


class ServerMetrics:
    """Counters and histograms the emulator updates per request."""

    def __init__(self, model_name: str) -> None:
        self.labels = f'model_name="{model_name}"'
        self.prompt_tokens = self.generation_tokens = self.success = self.failed = 0
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token in seconds.")
        self.tpot_old = Histogram("vllm:time_per_output_token_seconds",
                                  "Time per output token in seconds (pre-V1 name).")
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Inter-token latency in seconds.")
        self.req_tpot = Histogram("vllm:request_time_per_output_token_seconds",
                                  "Per-request mean time per output token in seconds.")
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency in seconds.")
        self.queue = Histogram("vllm:request_queue_time_seconds", "Time spent waiting in seconds.")

    def finished(self, prompt: int, output: int, queue_s: float, ttft_s: float, e2e_s: float) -> None:
        """Record one completed request (simulated seconds)."""
        self.prompt_tokens += prompt
        self.generation_tokens += output
        self.success += 1
        self.queue.observe(queue_s)
        self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)
        if output > 1:
            gap = (e2e_s - ttft_s) / (output - 1)
            self.req_tpot.observe(gap)
            for _ in range(min(output - 1, 64)):  # per-token gaps; capped: the mean is what counts
                self.tpot_old.observe(gap)
                self.itl.observe(gap)

    def render(self, gauges: dict[str, float]) -> str:
        """The whole exposition text."""
        lab = self.labels
        out = []
        for name, kind, value, help_text in (
            ("vllm:num_requests_running", "gauge", gauges.get("running", 0), "Requests in the running batch."),
            ("vllm:num_requests_waiting", "gauge", gauges.get("waiting", 0), "Requests waiting."),
            ("vllm:num_requests_swapped", "gauge", 0, "Requests swapped to CPU (pre-V1)."),
            ("vllm:gpu_cache_usage_perc", "gauge", gauges.get("kv", 0.0), "KV-cache usage, 1 = 100% (pre-V1 name)."),
            ("vllm:kv_cache_usage_perc", "gauge", gauges.get("kv", 0.0), "KV-cache usage, 1 = 100%."),
            ("vllm:num_preemptions_total", "counter", gauges.get("preemptions", 0), "Preemptions."),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens, "Prefill tokens processed."),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens, "Generation tokens."),
        ):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name}{{{lab}}} {value}"]
        out += ["# HELP vllm:request_success_total Finished requests.", "# TYPE vllm:request_success_total counter",
                f'vllm:request_success_total{{{lab},finished_reason="length"}} {self.success}']
        for h in (self.ttft, self.tpot_old, self.itl, self.req_tpot, self.e2e, self.queue):
            out += h.lines(lab)
        return "\n".join(out) + "\n"
