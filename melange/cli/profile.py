"""`melange profile`: build a GPU profile (max req/s per bucket under an SLO).

Only `--simulate` (sim-profiles from the catalog's roofline model) exists so far; profiling a
real server comes with the profiler.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import yaml

from melange.cli.options import catalog_option, parse_ms
from melange.core import BucketGrid, EngineConfig, MelangeError, Slo
from melange.perf.catalog import load_catalog
from melange.perf.profile_sim import RULE_TEXT, SearchParams, build_profile, profile_document
from melange.perf.roofline import RooflineParams
from melange.scenario import read_document


def load_grid(text: str) -> BucketGrid:
    """'paper', or a YAML/JSON file with input_edges and output_edges (top level or under grid)."""
    if text == "paper":
        return BucketGrid.paper()
    data = read_document(Path(text))
    data = data.get("grid", data) if isinstance(data.get("grid"), dict) else data
    if "input_edges" not in data or "output_edges" not in data:
        raise MelangeError(f"--grid: {text} has no input_edges/output_edges")
    return BucketGrid(tuple(int(e) for e in data["input_edges"]), tuple(int(e) for e in data["output_edges"]))


@click.command()
@click.option("--simulate", is_flag=True, help="Build the profile by simulation (no hardware).")
@click.option("--gpu", required=True, help="Catalog GPU or instance, e.g. A100-80GB or 4xH100.")
@click.option("--model", required=True, help="Catalog model, e.g. llama-2-7b.")
@click.option("--slo-tpot", required=True, help="TPOT limit, e.g. 120ms or 0.12s.")
@click.option("--slo-definition", type=click.Choice(["mean", "decode"]), default="mean", show_default=True)
@click.option("--slo-ttft", default=None, help="Optional TTFT limit, e.g. 2s.")
@click.option("--attainment", type=float, default=0.99, show_default=True,
              help="Share of requests that must meet the SLO.")
@click.option("--grid", "grid_text", default="paper", show_default=True, help="'paper' or a grid file.")
@click.option("--max-model-len", type=int, default=None,
              help="Longest request (tokens) the engine accepts; default: the model's context.")
@click.option("--max-num-seqs", type=int, default=256, show_default=True)
@click.option("--max-num-batched-tokens", type=int, default=None,
              help="Chunked-prefill token budget per step (default: off).")
@click.option("--engine-preset", default=None,
              help="CPU overheads of the roofline: a catalog engine preset (default: today's vLLM).")
@catalog_option
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache-dir", default=None, help="Cache directory (default $MELANGE_CACHE or ~/.cache/melange).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="Profile YAML to write.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile(simulate: bool, gpu: str, model: str, slo_tpot: str, slo_definition: str, slo_ttft: str | None,
            attainment: float, grid_text: str, max_model_len: int | None, max_num_seqs: int,
            max_num_batched_tokens: int | None, engine_preset: str | None, extra: tuple[str, ...], workers: int | None, seed: int, cache_dir: str | None,
            no_cache: bool, output: str, quiet: bool) -> None:
    """Build a GPU profile: the highest req/s one instance sustains per bucket under the SLO."""
    if not simulate:
        raise MelangeError("profile: only --simulate is available yet (real-server profiling is not built)")
    if not 0 < attainment <= 1:
        raise MelangeError("--attainment: must be in (0, 1]")
    if max_num_seqs < 1 or (max_model_len is not None and max_model_len < 2):
        raise MelangeError("--max-num-seqs / --max-model-len: must be positive")
    if max_num_batched_tokens is not None and max_num_batched_tokens < 1:
        raise MelangeError("--max-num-batched-tokens: must be positive")
    slo = Slo(parse_ms(slo_tpot, "--slo-tpot"), slo_definition,
              None if slo_ttft is None else parse_ms(slo_ttft, "--slo-ttft"), attainment)
    grid = load_grid(grid_text)
    catalog = load_catalog(extra)
    spec = catalog.model(model)
    preset = catalog.engine(engine_preset)  # checked before the long work
    engine = EngineConfig(max_num_seqs=max_num_seqs, max_model_len=max_model_len,
                          max_num_batched_tokens=max_num_batched_tokens)
    start = time.perf_counter()
    result = build_profile(catalog.instance(gpu), spec, slo, grid, engine=engine, catalog=catalog,
                           roofline=RooflineParams(preset=preset.name), search=SearchParams(seed=seed), workers=workers,
                           cache=False if no_cache else cache_dir, progress=not quiet)
    doc = profile_document(result, spec.name, slo, grid, engine={"max_num_seqs": max_num_seqs,
                                                                  "max_model_len": max_model_len,
                                                                  "max_num_batched_tokens": max_num_batched_tokens},
                           engine_preset=preset.name, rule=RULE_TEXT)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(yaml.safe_dump(doc, sort_keys=False, width=120))
    served = int((result.max_rate > 0).sum())
    click.echo(f"{output}: {result.gpu} × {spec.name}, {served}/{result.max_rate.size} buckets served, "
               f"{time.perf_counter() - start:.1f} s")
