"""`melange profile`: build a GPU profile (max req/s per bucket under an SLO).

Four sources: `--simulate` (sim-profiles from the catalog's roofline model), `--url` (measure a
running OpenAI-compatible server), `--serve "vllm serve …"` (start one, measure it, stop it) and
`--from-results` (existing `vllm bench serve` / GuideLLM results). Measured runs log every request
to a JSONL file (`--store`, default beside the output) and resume from it.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from melange.cli.options import SEED, catalog_option, check_output, parse_fraction, parse_ms
from melange.errors import MelangeError


def load_grid(text: str):
    """'paper', or a YAML/JSON file with input_edges and output_edges (top level or under grid)."""
    from melange.core import BucketGrid
    from melange.scenario import read_document

    if text == "paper":
        return BucketGrid.paper()
    data = read_document(Path(text))
    data = data.get("grid", data) if isinstance(data.get("grid"), dict) else data
    if "input_edges" not in data or "output_edges" not in data:
        raise MelangeError(f"--grid: {text} has no input_edges/output_edges")
    edges = []
    for key in ("input_edges", "output_edges"):
        values = data[key]
        if not isinstance(values, list) or not all(isinstance(e, int) and not isinstance(e, bool) for e in values):
            raise MelangeError(f"--grid: {key} must be a list of whole numbers of tokens, got {values!r}")
        edges.append(tuple(values))
    return BucketGrid(*edges)


def measured_options(f):
    """Options of the measured sources (--url, --serve, --from-results)."""
    options = [
        click.option("--url", default=None, help="Base URL of a running OpenAI-compatible server."),
        click.option("--serve", "serve_cmd", default=None,
                     help='Start this server command (e.g. "vllm serve MODEL"), profile it, stop it.'),
        click.option("--from-results", "from_results", default=None, type=click.Path(exists=True),
                     help="vllm bench serve --save-detailed JSON or GuideLLM report (file or directory)."),
        click.option("--served-model-name", default=None, help="Model name sent to the server (default: --model)."),
        click.option("--api", type=click.Choice(["completions", "chat"]), default="completions", show_default=True),
        click.option("--prompt", "prompt_mode", type=click.Choice(["ids", "text"]), default="ids", show_default=True,
                     help="Token-id prompts (exact lengths) or text sized with /tokenize."),
        click.option("--time-scale", type=float, default=1.0, show_default=True,
                     help="Multiply measured times by this (profiling `melange emulate --speedup K`: K)."),
        click.option("--timeout", "timeout_text", default="10m", show_default=True, help="Per-request timeout."),
        click.option("--store", default=None, help="Run log (JSONL) to write and resume from (default: OUTPUT.jsonl)."),
        click.option("--cost", type=float, default=None, help="$/hour of the instance, recorded in the profile."),
        click.option("--buckets", "bucket_text", default=None, help="Only these buckets, e.g. '0,0;2,1'."),
        click.option("--rel-tol", type=float, default=0.05, show_default=True, help="Rate search precision."),
        click.option("--arrival", type=click.Choice(["poisson", "gamma"]), default="poisson", show_default=True,
                     help="Send-time process of each load test."),
        click.option("--cv", type=float, default=1.0, show_default=True, help="Gamma arrivals: coefficient of variation."),
        click.option("--max-requests", type=int, default=30_000, show_default=True,
                     help="Requests per point at most (a cap on runaways; a point too short to judge fails)."),
        click.option("--min-window", "min_window_text", default="60s", show_default=True,
                     help="Counted part of a search point at least this long (GPU time)."),
        click.option("--confirm-requests", type=int, default=2000, show_default=True,
                     help="Requests at least in the point confirming a bucket's rate on fresh traffic."),
        click.option("--api-key", envvar="OPENAI_API_KEY", default=None, help="Bearer token (or $OPENAI_API_KEY)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command()
@click.option("--simulate", is_flag=True, help="Build the profile by simulation, without hardware (the "
              "mode is required: --simulate, --url/--serve or --from-results).")
@click.option("--gpu", required=True, help="Catalog GPU or instance, e.g. A100-80GB or 4xH100.")
@click.option("--model", required=True, help="Catalog model, e.g. llama-2-7b.")
@click.option("--slo-tpot", default=None, help="TPOT limit, e.g. 120ms or 0.12s (or give --slo-e2e).")
@click.option("--slo-definition", type=click.Choice(["mean", "decode", "mean_itl"]), default=None,
              help="decode: (e2e - TTFT) / (output - 1) per request, vLLM's, needs --slo-ttft; mean: e2e / "
                   "output per request; mean_itl: the paper's rule, the mean gap between tokens over all "
                   "requests (--slo-ttft then limits the mean TTFT). Default: decode with --slo-ttft, else mean.")
@click.option("--slo-ttft", default=None, help="Optional TTFT limit, e.g. 2s or 500ms.")
@click.option("--slo-e2e", default=None, help="Optional limit on each request's whole latency, e.g. 5min "
              "(a batch class; alone, without --slo-tpot).")
@click.option("--attainment", default="99%", show_default=True,
              help="Share of requests that must meet the SLO, e.g. 99% or 0.99.")
@click.option("--grid", "grid_text", default="paper", show_default=True, help="'paper' or a grid file.")
@click.option("--max-model-len", type=int, default=None,
              help="Longest request (tokens) the engine accepts; default: the model's context.")
@click.option("--max-num-seqs", type=int, default=256, show_default=True)
@click.option("--max-num-batched-tokens", type=int, default=None,
              help="Chunked-prefill token budget per step (default: off).")
@click.option("--trace", default=None, help="--simulate: lengths inside each bucket from this trace's requests "
              "there (a CSV or a built-in trace name), as the workload's; default: uniform in the bucket.")
@click.option("--engine-preset", default=None,
              help="CPU overheads of the roofline: a catalog engine preset (default: today's vLLM).")
@catalog_option
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--cache-dir", default=None, help="Cache directory (default $MELANGE_CACHE or ~/.cache/melange).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache (an interrupted run keeps nothing).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Profile YAML to write.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--sensitivity", is_flag=True, help="With --simulate: also build the profile with step times at "
              "both ends of the model's uncertainty band and list the cells that move (3x the work).")
@measured_options
def profile(simulate: bool, gpu: str, model: str, slo_tpot: str | None, slo_definition: str, slo_ttft: str | None,
            slo_e2e: str | None,
            attainment: str, grid_text: str, max_model_len: int | None, max_num_seqs: int,
            max_num_batched_tokens: int | None, trace: str | None, engine_preset: str | None, extra: tuple[str, ...], workers: int | None, seed: int, cache_dir: str | None,
            no_cache: bool, output: str, quiet: bool, sensitivity: bool, **measured) -> None:
    """Build a GPU profile: the highest req/s one instance sustains per bucket under the SLO.

    Three sources: --simulate (the roofline model, no hardware), --url/--serve (a running
    OpenAI-compatible server, measured) or --from-results (existing benchmark results). Finished
    buckets (or measured points) are kept as they finish: an interrupted run (Ctrl-C, SIGTERM)
    keeps them and a re-run of the same command resumes."""
    sources = [simulate, measured["url"] is not None or measured["serve_cmd"] is not None,
               measured["from_results"] is not None]
    if sum(sources) != 1:
        raise MelangeError("profile: give exactly one of --simulate, --url/--serve, --from-results")
    share = parse_fraction(attainment, "--attainment", high=1.0)
    if not share > 0:
        raise MelangeError("--attainment: must be in (0, 100%]")
    if max_num_seqs < 1 or (max_model_len is not None and max_model_len < 2):
        raise MelangeError("--max-num-seqs / --max-model-len: must be positive")
    if max_num_batched_tokens is not None and max_num_batched_tokens < 1:
        raise MelangeError("--max-num-batched-tokens: must be positive")
    from melange.core import EngineConfig, Slo
    from melange.files import atomic_write_text, check_writable
    from melange.perf.catalog import load_catalog
    from melange.perf.profile_sim import RULE_TEXT, build_profile, profile_document
    from melange.perf.profile_sim import cache_dir as default_cache
    from melange.perf.roofline import RooflineParams
    from melange.rate_search import SearchParams

    if slo_tpot is None and slo_e2e is None:
        raise MelangeError("--slo-tpot: required (or --slo-e2e for a batch class)")
    if slo_definition is None:  # decode TPOT needs a TTFT limit to count queueing (core.Slo)
        slo_definition = "decode" if slo_ttft is not None else "mean"
    slo = Slo(None if slo_tpot is None else parse_ms(slo_tpot, "--slo-tpot"), slo_definition,
              None if slo_ttft is None else parse_ms(slo_ttft, "--slo-ttft"), share,
              None if slo_e2e is None else parse_ms(slo_e2e, "--slo-e2e"))
    check_output(output, "-o")
    if not no_cache:
        check_writable(default_cache(cache_dir) / "sim-profiles", "--cache-dir", is_dir=True)
    grid = load_grid(grid_text)
    catalog = load_catalog(extra)
    if sensitivity and not simulate:
        raise MelangeError("--sensitivity: needs --simulate (a measured profile has no model band)")
    if not simulate:
        from melange.cli.profile_measured import measured_profile

        measured_profile(gpu=gpu, model=model, slo=slo, grid=grid, catalog=catalog, seed=seed, output=output,
                         quiet=quiet, engine=EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                                                          max_num_batched_tokens=max_num_batched_tokens),
                         **measured)
        return
    spec = catalog.model(model)
    preset = catalog.engine(engine_preset)  # checked before the long work
    if trace is not None:
        from melange.traces import load_trace, resolve_trace_path

        trace = str(resolve_trace_path(trace))
        load_trace(trace)  # a bad trace is one line before the long work
    engine = EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                          max_num_batched_tokens=max_num_batched_tokens)
    start = time.perf_counter()

    def build(scale: float = 1.0):
        return build_profile(catalog.instance(gpu), spec, slo, grid, engine=engine, catalog=catalog,
                             roofline=RooflineParams(preset=preset.name, scale=scale), search=SearchParams(seed=seed),
                             workers=workers, cache=False if no_cache else cache_dir, progress=not quiet, trace=trace,
                             notify=lambda msg: click.echo(msg, err=True))

    result = build()
    doc = profile_document(result, spec.name, slo, grid, engine={"max_num_seqs": max_num_seqs,
                                                                  "max_model_len": max_model_len,
                                                                  "max_num_batched_tokens": max_num_batched_tokens},
                           engine_preset=preset.name, rule=RULE_TEXT,
                           **({} if trace is None else {"lengths_trace": Path(trace).name}))
    import yaml

    atomic_write_text(output, yaml.safe_dump(doc, sort_keys=False, width=120))
    served = int((result.max_rate > 0).sum())
    click.echo(f"{output}: {result.gpu} × {spec.name}, {served}/{result.max_rate.size} buckets served, "
               f"{time.perf_counter() - start:.1f} s")
    if sensitivity:
        from melange.perf.band import band_changes, band_summary
        from melange.perf.roofline import step_uncertainty

        u = step_uncertainty(catalog.instance(gpu), RooflineParams(preset=preset.name), catalog)
        fast, slow = build(1 - u).max_rate, build(1 + u).max_rate
        s = band_summary(result.max_rate, fast, slow)
        click.echo(f"step-time band ±{u:.1%} ({gpu}'s family fit and {preset.name}): cells served "
                   f"{s['served']['slow']} (slow end) / {s['served']['mid']} / {s['served']['fast']} (fast end); "
                   f"median max rate ×{s['median_ratio']['slow']:.2f} (slow) / ×{s['median_ratio']['fast']:.2f} (fast)")
        for line in band_changes(grid, result.max_rate, fast, slow):
            click.echo(f"  moves more than 10 %: {line}")
