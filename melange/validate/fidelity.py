"""The step model held to public measurements of real GPUs.

The measurement set lives in melange/scenarios/measurements/ (sources and licences in its README):

- kernel rows (Vidur's A100, H100 and A40 tables): the non-attention time of a model's layer
  stack for n tokens in a step, against the roofline's GPU time for the same layers (no CPU
  overhead, no all-reduce: Vidur times the kernels alone);
- serving runs (Lambda's vLLM v0.5.4 benchmark: N ShareGPT prompts sent at once to one GPU):
  replayed with their exact lengths through the simulator's own instance engine with the
  `vllm-0.5` preset, against the mean TTFT, mean TPOT and output throughput the client saw;
- published points (published.yaml, the figures the other presets are fitted to): one request at
  a time, its mean ITL.

A fixed part of the data never enters the fit (`heldout`): Llama-3-8B's kernel rows, kernel rows
at token counts between the powers of two, and every third serving run. scripts/calibrate.py fits
on the rest; benchmarks/fidelity_public.py and tests/test_fidelity_public.py report both parts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import simpy

from melange.core import EngineConfig, StepTimeModel
from melange.files import load_yaml, read_text
from melange.perf.catalog import Catalog, Instance, ModelSpec, load_catalog
from melange.perf.roofline import RooflineParams, roofline_model
from melange.sim.instance import Instance as EngineInstance
from melange.sim.requests import Outcomes, Seq

MEASUREMENTS = Path(__file__).resolve().parent.parent / "scenarios" / "measurements"
HELDOUT_TOKENS = frozenset({96, 320, 768, 1536, 3072})
HELDOUT_MODELS = frozenset({"llama-3-8b"})
LAMBDA_PRESET = "vllm-0.5"
POLL_S = 0.0005  # a closed-loop client notices its request finished within this
LAMBDA_ENGINE = {"max_num_seqs": 256}  # vLLM v0.5.4's defaults: no chunked prefill up to 32K


@dataclass(frozen=True)
class Point:
    """One measurement beside the model's prediction."""

    source: str  # vidur | lambda | published
    gpu: str
    model: str
    conditions: str
    metric: str
    measured: float
    predicted: float
    heldout: bool
    preset: str = ""  # the engine preset a serving point ran with

    @property
    def ratio(self) -> float:
        """predicted / measured."""
        return self.predicted / self.measured


def layer_stack(model: ModelSpec) -> ModelSpec:
    """`model` reduced to its transformer layers' weights (what Vidur's mlp tables time: no
    embedding, no LM head)."""
    h, q = model.hidden, model.heads * model.head_dim
    per_layer = h * (q + 2 * model.kv_heads * model.head_dim) + q * h + 3 * h * model.intermediate
    return dataclasses.replace(model, params=float(model.layers * per_layer), name=f"{model.name}-layers")


def kernel_rows() -> pd.DataFrame:
    """Vidur's kernel rows with a `heldout` column."""
    rows = pd.read_csv(MEASUREMENTS / "vidur_kernels.csv")
    rows["heldout"] = rows.model.isin(HELDOUT_MODELS) | rows.tokens.isin(HELDOUT_TOKENS)
    return rows


def kernel_model(catalog: Catalog, gpu: str, model: str, tp: int,
                 params: RooflineParams | None = None):
    """The roofline of `model`'s layer stack on `tp` × `gpu`."""
    return roofline_model(Instance(catalog.gpu(gpu), tp), layer_stack(catalog.model(model)),
                          params=params, catalog=catalog)


def kernel_points(catalog: Catalog | None = None) -> list[Point]:
    """Every kernel row against the roofline's GPU time for its tokens (decode-shaped: weights
    read once, 2·params FLOPs a token, no attention)."""
    catalog = catalog or load_catalog()
    points = []
    for r in kernel_rows().itertuples():
        m = kernel_model(catalog, r.gpu, r.model, r.tp)
        points.append(Point("vidur", r.gpu, r.model, f"TP{r.tp}, {r.tokens} tokens", "layers_ms",
                            r.ms, 1e3 * m.gpu_time(0, r.tokens, 0), bool(r.heldout)))
    return points


def one_instance(model: StepTimeModel, engine: EngineConfig, n: int):
    """A SimPy clock, outcomes for `n` requests, and one instance of the simulator's engine."""
    env = simpy.Environment()
    out = Outcomes(n)
    return env, out, EngineInstance(env, 0, "replay", model, engine, out, [0], 0)


def replay_burst(model: StepTimeModel, engine: EngineConfig, prompts: list[int],
                 outputs: list[int], gap_s: float = 0.0) -> tuple[list[float], list[float]]:
    """Send the requests at once to one simulated instance; (TTFT, end) per request, seconds
    from the burst. They reach the engine `gap_s` apart: the API server parses and tokenises
    them one after another, so the engine's first step starts with only the first few (Lambda's
    runs show it: 2 of 10 prompts get their first token a whole step before the rest). A
    request that produced no token is sent for one (the server still prefilled it)."""
    env, out, inst = one_instance(model, engine, len(prompts))

    def send():
        for i, (p, o) in enumerate(zip(prompts, outputs)):
            if i and gap_s:
                yield env.timeout(gap_s)
            inst.submit(Seq(i, max(p, 1), max(o, 1), env.now))

    env.process(send())
    env.run()
    return list(out.ttft), list(out.e2e)


def lambda_runs() -> list[dict]:
    """Lambda's vLLM v0.5.4 runs, sorted by file, with a `heldout` flag (every third)."""
    runs = json.loads(read_text(MEASUREMENTS / "lambda_vllm_0.5.4.json"))["runs"]
    runs.sort(key=lambda r: r["file"])
    return [dict(r, heldout=i % 3 == 2) for i, r in enumerate(runs)]


def serving_metrics(ttft: list[float], end: list[float], outputs: list[int]) -> dict[str, float]:
    """mean TTFT (ms), mean TPOT (ms) and output tokens/s as vLLM's benchmark_serving computes
    them: a request that streamed no token has TTFT 0; TPOT over requests with 2+ tokens. The
    mean, not the median: a burst's TTFTs come in step-sized groups, and a median that falls
    between two groups jumps by a whole step with a 1 % change of any step time."""
    ttfts = [t if o > 0 else 0.0 for t, o in zip(ttft, outputs)]
    tpots = [(e - t) / (o - 1) for t, e, o in zip(ttft, end, outputs) if o > 1]
    return {"mean_ttft_ms": 1e3 * statistics.fmean(ttfts),
            "mean_tpot_ms": 1e3 * statistics.fmean(tpots),
            "output_throughput": sum(outputs) / max(end)}


def lambda_points(catalog: Catalog | None = None, runs: list[dict] | None = None,
                  preset: str = LAMBDA_PRESET) -> list[Point]:
    """Each Lambda run replayed: three points (mean TTFT, mean TPOT, output tokens/s)."""
    catalog = catalog or load_catalog()
    gap = catalog.engine(preset).arrival_gap_s
    points = []
    for run in runs if runs is not None else lambda_runs():
        engine = EngineConfig(max_model_len=run["max_model_len"], **LAMBDA_ENGINE)
        model = roofline_model(catalog.instance(run["gpu"]), catalog.model(run["model"]), engine,
                               RooflineParams(preset=preset), catalog)
        ttft, end = replay_burst(model, engine, run["input_lens"], run["output_lens"], gap)
        got = serving_metrics(ttft, end, run["output_lens"])
        cond = f"{run['num_prompts']} prompts at once, max_model_len {run['max_model_len']}"
        points += [Point("lambda", run["gpu"], run["model"], cond, k, run[k], v, run["heldout"], preset)
                   for k, v in got.items()]
    return points


def replay_closed(model: StepTimeModel, engine: EngineConfig, prompt: int, output: int, users: int,
                  rounds: int = 4) -> float:
    """`users` clients each sending a request as soon as their last one finished (a benchmark at
    fixed concurrency), `rounds` requests each; mean ITL (s) of the requests after every user's
    first (the start-up, when all prefill together, is left out)."""
    env, out, inst = one_instance(model, engine, users * rounds)

    def user(u: int):
        for k in range(rounds):
            rid = u * rounds + k
            inst.submit(Seq(rid, prompt, output, env.now))
            while math.isnan(out.e2e[rid]):  # a poll keeps the engine untouched
                yield env.timeout(POLL_S)

    for u in range(users):
        env.process(user(u))
    env.run()
    later = [u * rounds + k for u in range(users) for k in range(1, rounds)]
    return statistics.fmean((out.e2e[r] - out.ttft[r]) / (output - 1) for r in later)


def published_points(catalog: Catalog | None = None) -> list[Point]:
    """Published ITL figures at a fixed concurrency (published.yaml): those the vllm-0.2 and
    vllm-0.23 presets are fitted to, and held-out ones no fit sees."""
    catalog = catalog or load_catalog()
    points = []
    for p in load_yaml(read_text(MEASUREMENTS / "published.yaml"))["points"]:
        engine = EngineConfig(max_num_batched_tokens=p.get("max_num_batched_tokens"))
        model = roofline_model(catalog.instance(p["gpu"]), catalog.model(p["model"]), engine,
                               RooflineParams(preset=p["preset"]), catalog)
        users = p.get("concurrency", 1)
        itl = 1e3 * replay_closed(model, engine, p["prompt"], p["output"], users)
        points.append(Point("published", p["gpu"], p["model"],
                            f"{p['preset']}, {p['prompt']} in / {p['output']} out, concurrency {users}",
                            "itl_ms", p["itl_ms"], itl, bool(p.get("heldout", False)), p["preset"]))
    return points


def all_points(catalog: Catalog | None = None) -> list[Point]:
    """Every public measurement beside its prediction."""
    catalog = catalog or load_catalog()
    return kernel_points(catalog) + lambda_points(catalog) + published_points(catalog)


def _errors(points: list[Point]) -> dict:
    if not points:
        return {"points": 0}
    errs = [abs(p.ratio - 1) for p in points]
    worst = max(points, key=lambda p: abs(math.log(p.ratio)))
    return {"points": len(points), "median_abs_error": round(statistics.median(errs), 4),
            "worst_ratio": round(worst.ratio, 4)}


def summary(points: list[Point]) -> dict:
    """Median absolute error and worst ratio, overall, held-out, per source and per GPU."""
    out = _errors(points)
    out["heldout"] = _errors([p for p in points if p.heldout])
    out["fitted"] = _errors([p for p in points if not p.heldout])
    out["per_source"] = {s: _errors([p for p in points if p.source == s])
                         for s in sorted({p.source for p in points})}
    out["per_gpu"] = {g: _errors([p for p in points if p.gpu == g]) for g in sorted({p.gpu for p in points})}
    return out
