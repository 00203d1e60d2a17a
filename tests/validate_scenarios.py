"""Small scenarios with known behaviour for the validation tests (one or two buckets, linear steps)."""

from __future__ import annotations

import yaml

# One request of ~100 input / ~35 output tokens takes ~0.38 s alone; with batching (32 seqs) one
# instance serves about 20 req/s within a 60 ms mean TPOT.
STEP = {"alpha": 0.01, "beta_prefill": 0.0001, "beta_decode": 0.0002, "beta_kv": 1.0e-7,
        "kv_capacity_tokens": 40000}
SLOW = {**STEP, "alpha": 0.1}  # every step >= 100 ms: misses a 60 ms TPOT whatever the load


def write(tmp_path, doc: dict, name: str = "loop.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def scenario(tmp_path, max_rate: float, **extra) -> str:
    """One bucket, one GPU type whose profile claims `max_rate` req/s per instance."""
    doc = {
        "name": "loop",
        "grid": {"input_edges": [1, 200], "output_edges": [10, 60]},
        "workload": {"rate": 40, "distribution": [[1.0]]},
        "slo": {"tpot_ms": 60, "attainment": 0.95},
        "gpus": [{"name": "G", "cost": 1.0, "profile": [[max_rate]], "step_time": STEP,
                  "engine": {"max_num_seqs": 32}}],
        "solver": {"slice_factor": 4},
        "simulation": {"requests": 2000, "seed": 3, "warmup_s": 5},
    }
    for key, value in extra.items():
        doc[key] = {**doc[key], **value} if isinstance(value, dict) and key in doc else value
    return write(tmp_path, doc)


def two_buckets(tmp_path) -> str:
    """Bucket (1, 0) is 4 % of traffic; the cheap type S claims it but misses every request there."""
    doc = {
        "name": "floor",
        "grid": {"input_edges": [1, 200, 400], "output_edges": [10, 60]},
        "workload": {"rate": 40, "distribution": [[0.96], [0.04]]},
        "slo": {"tpot_ms": 60, "attainment": 0.95},
        "gpus": [{"name": "G", "cost": 1.0, "profile": [[19.5], [19.5]], "step_time": STEP,
                  "engine": {"max_num_seqs": 32}},
                 {"name": "S", "cost": 0.1, "profile": [[0.0], [50.0]], "step_time": SLOW}],
        "solver": {"slice_factor": 4},
        "simulation": {"requests": 4000, "seed": 3, "warmup_s": 5},
    }
    return write(tmp_path, doc, "floor.yaml")


def growing_queue(tmp_path) -> str:
    """One request at a time (~0.38 s each, ~2.6 req/s) offered 3 req/s, under an SLO so loose
    that every request meets it while the queue grows: only stability can tell."""
    doc = {
        "name": "growing",
        "grid": {"input_edges": [1, 200], "output_edges": [10, 60]},
        "workload": {"rate": 3, "distribution": [[1.0]]},
        "slo": {"tpot_ms": 1.0e6, "attainment": 0.95},
        "gpus": [{"name": "G", "cost": 1.0, "profile": [[6.0]], "step_time": STEP,
                  "engine": {"max_num_seqs": 1}}],
        "solver": {"slice_factor": 4},
        "simulation": {"requests": 1500, "seed": 3, "warmup_s": 30},
    }
    return write(tmp_path, doc, "growing.yaml")
