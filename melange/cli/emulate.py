"""`melange emulate`: an OpenAI-compatible server timed by the simulator's engine (no GPU)."""

from __future__ import annotations

import click

from melange.cli.options import catalog_option, parse_duration, parse_fraction


@click.command()
@click.option("--gpu", default="A100-80GB", show_default=True, help="Catalog GPU or instance to emulate.")
@click.option("--model", default="llama-2-7b", show_default=True, help="Catalog model to emulate.")
@click.option("--served-model-name", default=None, help="Model name clients send (default: --model).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--speedup", type=float, default=1.0, show_default=True,
              help="Run K times faster than the emulated GPU (profile with --time-scale K).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fault draws.")
@click.option("--max-num-seqs", type=int, default=256, show_default=True)
@click.option("--max-num-batched-tokens", type=int, default=None, help="Chunked-prefill budget (default: off).")
@click.option("--max-model-len", type=int, default=None, help="Longest request accepted (tokens).")
@click.option("--fixed-ttft", default=None, help="Fixed TTFT instead of the engine, e.g. 50ms.")
@click.option("--fixed-itl", default=None, help="Fixed inter-token gap instead of the engine, e.g. 10ms.")
@click.option("--error-rate", default="0", help="Share of requests answered with HTTP 500, e.g. 5%.")
@click.option("--error-event-rate", default="0", help="Share that send an error event after HTTP 200.")
@click.option("--stall-rate", default="0", help="Share whose stream stalls mid-way.")
@click.option("--stall", "stall_text", default="1h", show_default=True, help="How long a stall lasts.")
@click.option("--drop-rate", default="0", help="Share whose connection is dropped mid-stream.")
@click.option("--malformed-rate", default="0", help="Share that get a malformed event.")
@catalog_option
def emulate(gpu: str, model: str, served_model_name: str | None, host: str, port: int, speedup: float,
            seed: int, max_num_seqs: int, max_num_batched_tokens: int | None, max_model_len: int | None,
            fixed_ttft: str | None, fixed_itl: str | None, error_rate: str, error_event_rate: str,
            stall_rate: str, stall_text: str, drop_rate: str, malformed_rate: str, extra: tuple[str, ...]) -> None:
    """Serve an emulated vLLM (OpenAI API) whose timing is the simulator's batching engine."""
    from melange.core import EngineConfig, MelangeError
    from melange.profiler.emulator import EmulatorConfig, serve

    if not speedup > 0 or not 0 <= port < 65536:
        raise MelangeError("--speedup/--port: speedup must be > 0 and port in 0..65535")
    config = EmulatorConfig(
        gpu=gpu, model=model, served_name=served_model_name, host=host, port=port, speedup=speedup, seed=seed,
        engine=EngineConfig(max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                            max_model_len=max_model_len),
        fixed_ttft_s=None if fixed_ttft is None else parse_duration(fixed_ttft, "--fixed-ttft", hint="ms|s"),
        fixed_itl_s=None if fixed_itl is None else parse_duration(fixed_itl, "--fixed-itl", hint="ms|s"),
        http_error=parse_fraction(error_rate, "--error-rate"),
        error_event=parse_fraction(error_event_rate, "--error-event-rate"),
        stall=parse_fraction(stall_rate, "--stall-rate"), stall_s=parse_duration(stall_text, "--stall"),
        drop=parse_fraction(drop_rate, "--drop-rate"), malformed=parse_fraction(malformed_rate, "--malformed-rate"),
        catalog=tuple(extra))
    click.echo(f"melange emulate: {gpu} × {model} at http://{host}:{port} (speedup {speedup:g})", err=True)
    signum = serve(config)  # until Ctrl-C or SIGTERM; streams in flight are cut, not waited for
    raise click.exceptions.Exit(128 + signum)
