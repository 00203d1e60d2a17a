"""The emulated server's /metrics: Prometheus text laid out as vLLM's V1 engine writes it.

Names, labels (`model_name`, `engine`) and histogram buckets follow vLLM's
`vllm/v1/metrics/loggers.py` (`PrometheusStatLogger`): counters carry `_total`; TTFT buckets reach
2,560 s; per-token gaps (`vllm:inter_token_latency_seconds`, one observation per gap after the first
token) and the per-request phases (queue, prefill, decode, inference, e2e) use vLLM's buckets; the
prompt and generation token counts use its 1-2-5 buckets up to the model length. Names vLLM keeps
only behind `--show-hidden-metrics-for-version` (`vllm:gpu_cache_usage_perc`,
`vllm:time_per_output_token_seconds`) are served only with `legacy=True`. Latencies are in the
emulated GPU's time (simulated seconds), whatever the server's --speedup. Not served: the
per-step `vllm:iteration_tokens_total` (the emulator does not observe single engine steps), LoRA,
speculative decoding and multimodal metrics.
"""

from __future__ import annotations

import bisect

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
TOKEN_GAP_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                     40.0, 80.0)
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                   480.0, 960.0, 1920.0, 7680.0)


def buckets_1_2_5(max_value: int) -> tuple[float, ...]:
    """1, 2, 5, 10, 20, 50, ... up to `max_value` (vLLM's token-count buckets)."""
    out, scale = [], 1
    while True:
        for m in (1, 2, 5):
            if m * scale > max_value:
                return tuple(float(v) for v in out)
            out.append(m * scale)
        scale *= 10


class Histogram:
    """A cumulative Prometheus histogram over fixed buckets."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        """Count `times` observations of `value`."""
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.sum += value * times

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

    def __init__(self, model_name: str, max_model_len: int = 4096, legacy: bool = False) -> None:
        self.labels = f'engine="0",model_name="{model_name}"'
        self.legacy = legacy
        self.prompt_tokens = self.generation_tokens = self.success = 0
        tokens = buckets_1_2_5(max(int(max_model_len), 1))
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              TTFT_BUCKETS)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             TOKEN_GAP_BUCKETS)
        self.tpot_old = Histogram("vllm:time_per_output_token_seconds",
                                  "Histogram of time per output token in seconds (hidden since V1).", TOKEN_GAP_BUCKETS)
        self.req_tpot = Histogram("vllm:request_time_per_output_token_seconds",
                                  "Histogram of time_per_output_token_seconds per request.", TOKEN_GAP_BUCKETS)
        phases = {name: Histogram(f"vllm:{name}", text, REQUEST_BUCKETS) for name, text in (
            ("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds."),
            ("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request."),
            ("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request."),
            ("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request."),
            ("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request."))}
        self.phases = phases
        self.prompt_hist = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens)
        self.gen_hist = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", tokens)

    def finished(self, prompt: int, output: int, queue_s: float, ttft_s: float, e2e_s: float) -> None:
        """Record one completed request (simulated seconds)."""
        self.prompt_tokens += prompt
        self.generation_tokens += output
        self.success += 1
        p = self.phases
        p["request_queue_time_seconds"].observe(queue_s)
        p["e2e_request_latency_seconds"].observe(e2e_s)
        p["request_inference_time_seconds"].observe(max(e2e_s - queue_s, 0.0))
        p["request_prefill_time_seconds"].observe(max(ttft_s - queue_s, 0.0))
        p["request_decode_time_seconds"].observe(max(e2e_s - ttft_s, 0.0))
        self.ttft.observe(ttft_s)
        self.prompt_hist.observe(prompt)
        self.gen_hist.observe(output)
        if output > 1:
            gap = (e2e_s - ttft_s) / (output - 1)
            self.req_tpot.observe(gap)
            self.itl.observe(gap, output - 1)  # one observation per gap, as vLLM counts them
            self.tpot_old.observe(gap, output - 1)

    def render(self, gauges: dict[str, float]) -> str:
        """The whole exposition text."""
        lab = self.labels
        out = []
        rows = [
            ("vllm:num_requests_running", "gauge", gauges.get("running", 0), "Number of requests in model execution batches."),
            ("vllm:num_requests_waiting", "gauge", gauges.get("waiting", 0), "Number of requests waiting to be processed."),
            ("vllm:kv_cache_usage_perc", "gauge", gauges.get("kv", 0.0), "KV-cache usage. 1 means 100 percent usage."),
            ("vllm:prefix_cache_queries_total", "counter", self.prompt_tokens,
             "Prefix cache queries, in terms of number of queried tokens."),
            ("vllm:prefix_cache_hits_total", "counter", 0, "Prefix cache hits, in terms of number of cached tokens."),
            ("vllm:num_preemptions_total", "counter", gauges.get("preemptions", 0),
             "Cumulative number of preemption from the engine."),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens, "Number of prefill tokens processed."),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens, "Number of generation tokens processed."),
        ]
        if self.legacy:
            rows.append(("vllm:gpu_cache_usage_perc", "gauge", gauges.get("kv", 0.0),
                         "GPU KV-cache usage. DEPRECATED: Use vllm:kv_cache_usage_perc instead."))
        for name, kind, value, help_text in rows:
            family = name[:-len("_total")] if kind == "counter" else name
            out += [f"# HELP {family} {help_text}", f"# TYPE {family} {kind}", f"{name}{{{lab}}} {value}"]
        out += ["# HELP vllm:request_success Count of successfully processed requests.",
                "# TYPE vllm:request_success counter",
                f'vllm:request_success_total{{{lab},finished_reason="length"}} {self.success}']
        hists = [self.ttft, self.itl, self.req_tpot, *self.phases.values(), self.prompt_hist, self.gen_hist]
        for h in hists + ([self.tpot_old] if self.legacy else []):
            out += h.lines(lab)
        return "\n".join(out) + "\n"
