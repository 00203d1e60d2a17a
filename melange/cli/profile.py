"""`melange profile`: build a GPU profile (max req/s per bucket under an SLO).

Only `--simulate` (sim-profiles from the catalog's roofline model) exists so far; profiling a
real server comes with the profiler.
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


@click.command()
@click.option("--simulate", is_flag=True, help="The mode (required; the only one so far): build the "
              "profile by simulation, without hardware.")
@click.option("--gpu", required=True, help="Catalog GPU or instance, e.g. A100-80GB or 4xH100.")
@click.option("--model", required=True, help="Catalog model, e.g. llama-2-7b.")
@click.option("--slo-tpot", required=True, help="TPOT limit, e.g. 120ms or 0.12s.")
@click.option("--slo-definition", type=click.Choice(["mean", "decode"]), default=None,
              help="decode: (e2e - TTFT) / (output - 1), vLLM's, needs --slo-ttft; mean: e2e / output, "
                   "the paper's. Default: decode with --slo-ttft (as the built-in scenario), else mean.")
@click.option("--slo-ttft", default=None, help="Optional TTFT limit, e.g. 2s or 500ms.")
@click.option("--attainment", default="99%", show_default=True,
              help="Share of requests that must meet the SLO, e.g. 99% or 0.99.")
@click.option("--grid", "grid_text", default="paper", show_default=True, help="'paper' or a grid file.")
@click.option("--max-model-len", type=int, default=None,
              help="Longest request (tokens) the engine accepts; default: the model's context.")
@click.option("--max-num-seqs", type=int, default=256, show_default=True)
@click.option("--max-num-batched-tokens", type=int, default=None,
              help="Chunked-prefill token budget per step (default: off).")
@catalog_option
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--cache-dir", default=None, help="Cache directory (default $MELANGE_CACHE or ~/.cache/melange).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache (an interrupted run keeps nothing).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Profile YAML to write.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile(simulate: bool, gpu: str, model: str, slo_tpot: str, slo_definition: str, slo_ttft: str | None,
            attainment: str, grid_text: str, max_model_len: int | None, max_num_seqs: int,
            max_num_batched_tokens: int | None, extra: tuple[str, ...], workers: int | None, seed: int, cache_dir: str | None,
            no_cache: bool, output: str, quiet: bool) -> None:
    """Build a GPU profile: the highest req/s one instance sustains per bucket under the SLO.

    Buckets are cached as they finish: an interrupted run (Ctrl-C, SIGTERM) keeps them and a
    re-run of the same command resumes."""
    if not simulate:
        raise MelangeError("profile: only --simulate is available yet; give it (real-server profiling is not built)")
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
    from melange.perf.profile_sim import SearchParams, build_profile, cache_dir as default_cache, profile_document

    if slo_definition is None:  # decode TPOT needs a TTFT limit to count queueing (core.Slo)
        slo_definition = "decode" if slo_ttft is not None else "mean"
    slo = Slo(parse_ms(slo_tpot, "--slo-tpot"), slo_definition,
              None if slo_ttft is None else parse_ms(slo_ttft, "--slo-ttft"), share)
    check_output(output, "-o")
    if not no_cache:
        check_writable(default_cache(cache_dir) / "sim-profiles", "--cache-dir", is_dir=True)
    grid = load_grid(grid_text)
    catalog = load_catalog(extra)
    spec = catalog.model(model)
    engine = EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                          max_num_batched_tokens=max_num_batched_tokens)
    start = time.perf_counter()
    result = build_profile(catalog.instance(gpu), spec, slo, grid, engine=engine, catalog=catalog,
                           search=SearchParams(seed=seed), workers=workers,
                           cache=False if no_cache else cache_dir, progress=not quiet,
                           notify=lambda msg: click.echo(msg, err=True))
    doc = profile_document(result, spec.name, slo, grid, engine={"max_num_seqs": max_num_seqs,
                                                                  "max_model_len": max_model_len,
                                                                  "max_num_batched_tokens": max_num_batched_tokens})
    import yaml

    atomic_write_text(output, yaml.safe_dump(doc, sort_keys=False, width=120))
    served = int((result.max_rate > 0).sum())
    click.echo(f"{output}: {result.gpu} × {spec.name}, {served}/{result.max_rate.size} buckets served, "
               f"{time.perf_counter() - start:.1f} s")
