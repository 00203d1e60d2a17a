"""`--from-results`: a profile from load tests someone already ran.

Two formats:

- `vllm bench serve --save-result --save-detailed` JSON: one file per rate, with `request_rate`,
  per-request `input_lens`, `output_lens`, `ttfts`, `itls` (lists of gaps) and `errors`. It has
  no send times, so arrivals are taken as evenly spaced at the request rate (an approximation:
  the stability checks see the right number of arrivals, not their exact times);
- GuideLLM JSON reports: several benchmarks per file, each with its strategy's rate
  (`config.strategy` in GuideLLM 0.8, `args.strategy` in 0.2-0.3) and every request's timings
  (`info.timings` in 0.8; `start_time`, `first_token_time`, `end_time` before), token counts, and
  errored and incomplete requests (kept as failures). Requests are timed from their *scheduled*
  start (`targeted_start`), so a client that fell behind (or waited for a concurrency slot) shows
  as queueing. Benchmarks without a rate (synchronous, throughput, concurrent) and ramping ones are
  skipped, each with its reason in the profile.

A load test is a point of the bucket that holds at least 90 % of its requests (mixed tests are
skipped, with the reason). Points are judged by the same rule as measured ones
(`search.judge_point`); a bucket's max rate is the highest passing rate below its lowest
failing one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from melange.core import BucketGrid, MelangeError, Profile, Slo
from melange.metrics import RequestRecord
from melange.profiler.run import RunResult
from melange.profiler.search import SearchSettings, judge_point
from melange.rate_search import slo_bound_s
from melange.profiler.store import rate_key

BUCKET_SHARE = 0.9  # a load test counts for a bucket when this share of its requests is in it


def _vllm_points(data: dict, gpu: str) -> tuple[list[tuple[float, list[RequestRecord]]], str]:
    """(rate points, why the run was skipped or '') of one `vllm bench serve --save-detailed` result."""
    rate = data.get("request_rate", math.inf)
    rate = float(rate) if isinstance(rate, (int, float)) or str(rate) in ("inf", "Infinity") else math.nan
    if not math.isfinite(rate) or rate <= 0:
        return [], f"request rate {data.get('request_rate')!r}: not an open-loop rate point"
    if data.get("max_concurrency") not in (None, 0):
        # Requests then wait for a free slot in the client, and vLLM's ttfts leave that wait out:
        # a saturated server would look fine. Not a rate point.
        return [], f"max_concurrency {data['max_concurrency']}: a closed-loop run (its TTFTs leave out the client's wait)"
    if data.get("ramp_up_strategy"):
        return [], f"ramp-up ({data['ramp_up_strategy']}): the rate changes during the run"
    ins, outs, ttfts, itls = data["input_lens"], data["output_lens"], data["ttfts"], data["itls"]
    n = len(ins)
    errors = data.get("errors") or [""] * n
    starts = data.get("start_times")
    if any(len(x) != n for x in (outs, ttfts, itls, errors)) or (starts is not None and len(starts) != n):
        raise MelangeError("--from-results: a vLLM result's per-request lists differ in length")
    t0 = min(starts) if starts else 0.0
    records = []
    for k in range(n):
        gaps = tuple(float(g) for g in (itls[k] or ()))
        err = errors[k] or None
        arrival = float(starts[k]) - t0 if starts else k / rate  # no send times saved: evenly spaced
        ttft = float(ttfts[k]) if ttfts[k] is not None and err is None else math.nan
        # A failed request leaves the system when it failed (unknown: at once), never "still in it".
        e2e = ttft + sum(gaps) if err is None else 0.0
        records.append(RequestRecord(
            request_id=k, arrival_s=arrival, input_tokens=int(ins[k]), output_tokens=int(outs[k] or 0),
            bucket_in=-1, bucket_out=-1, gpu=gpu, instance=0, queue_s=math.nan, ttft_s=ttft,
            e2e_s=e2e, error=err, sent_s=arrival, itl_s=gaps))
    return [(rate, records)], ""


def _time(value) -> float:
    """A GuideLLM timestamp, NaN when it has none (None, or -1.0 for 'not recorded')."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else math.nan


# Where each GuideLLM layout keeps a request's timestamps: (sent, scheduled, first token, last
# token, end if no last token). 0.8 nests them in `info.timings`; 0.2-0.3 had them on the request.
_GUIDELLM_TIMES = {"0.8": ("request_start", "targeted_start", "first_token_iteration", "last_token_iteration"),
                   "0.2": ("start_time", "targeted_start_time", "first_token_time", "last_token_time")}


def _guidellm_request(r: dict) -> tuple[float, float, float, float, int, int]:
    """(scheduled, sent, first token, last token, prompt tokens, output tokens) of one GuideLLM
    request, from the 0.8 layout (`info.timings`, computed token counts) or the 0.2-0.3 one."""
    timings = (r.get("info") or {}).get("timings") if isinstance(r.get("info"), dict) else None
    source, names, end = (timings, _GUIDELLM_TIMES["0.8"], "request_end_time") if isinstance(timings, dict) \
        else (r, _GUIDELLM_TIMES["0.2"], "end_time")
    sent, scheduled, first, last = (_time(source.get(n)) for n in names)
    if math.isnan(last):
        last = _time(r.get(end))
    prompt = r.get("prompt_tokens") or ((r.get("input_metrics") or {}).get("text_tokens")) or 0
    output = r.get("output_tokens") or ((r.get("output_metrics") or {}).get("text_tokens")) or 0
    return scheduled if not math.isnan(scheduled) else sent, sent, first, last, int(prompt), int(output)


def _guidellm_points(data: dict, gpu: str, skipped: list[dict] | None = None) -> list[tuple[float, list[RequestRecord]]]:
    """Rate points of a GuideLLM report. Requests are timed from their *scheduled* start
    (`targeted_start`): a client that fell behind its schedule shows as queueing, not as a server
    that kept up (coordinated omission). A request with no timing (-1 or missing) failed."""
    points = []
    for k_bench, bench in enumerate(data["benchmarks"]):
        if not isinstance(bench, dict):
            raise MelangeError(f"--from-results: benchmarks[{k_bench}] is not an object")
        config = bench.get("config") if isinstance(bench.get("config"), dict) else (bench.get("args") or {})
        strategy = config.get("strategy") or {} if isinstance(config, dict) else {}
        rate, kind = strategy.get("rate"), strategy.get("type_", "?")
        why = ("" if isinstance(rate, (int, float)) and rate > 0 and math.isfinite(rate) else
               f"strategy {kind}: no request rate (not an open-loop rate point)")
        # A concurrency cap (GuideLLM sets one by default) is harmless here: requests are timed from
        # their scheduled start, so time spent waiting for a slot counts against the server.
        if not why and (strategy.get("rampup_duration") or 0) > 0:
            why = f"strategy {kind} ramps up for {strategy['rampup_duration']} s: the rate changes during the run"
        if why:
            if skipped is not None:
                skipped.append({"passed": False, "reason": f"skipped benchmark {k_bench}: {why}"})
            continue
        reqs = bench.get("requests") or {}
        rows = [(r, None) for r in reqs.get("successful", [])]
        rows += [(r, str(r.get("error") or (r.get("info") or {}).get("error") or "errored")) for r in reqs.get("errored", [])]
        rows += [(r, "incomplete") for r in reqs.get("incomplete", [])]
        parsed = [(_guidellm_request(r), err) for r, err in rows]
        parsed = [(p, err) for p, err in parsed if not math.isnan(p[0])]
        if not parsed:
            continue
        t0 = min(p[0] for p, _ in parsed)
        records = []
        for k, ((scheduled, sent, first, last, prompt, output), err) in enumerate(parsed):
            if err is None and (math.isnan(first) or math.isnan(last)):
                err = "no token timings recorded"
            arrival = scheduled - t0
            records.append(RequestRecord(
                request_id=k, arrival_s=arrival, input_tokens=prompt, output_tokens=output, bucket_in=-1,
                bucket_out=-1, gpu=gpu, instance=0, queue_s=math.nan,
                ttft_s=first - scheduled if err is None else math.nan,
                e2e_s=last - scheduled if err is None else (0.0 if math.isnan(last) else last - scheduled),
                error=err, sent_s=(sent - t0) if not math.isnan(sent) else arrival))
        points.append((float(rate), records))
    return points


def _json_objects(text: str) -> list:
    """Every JSON value in `text`: one, or several one after another (`--append-result` files)."""
    decoder, out, k = json.JSONDecoder(), [], 0
    while True:
        while k < len(text) and text[k].isspace():
            k += 1
        if k >= len(text):
            return out
        value, k = decoder.raw_decode(text, k)
        out.append(value)


def load_points(path: str | Path, gpu: str,
                skipped: list[dict] | None = None) -> list[tuple[str, float, list[RequestRecord]]]:
    """(file, rate, records) of every rate point in `path` (a file or a directory of .json); runs
    that are not rate points are listed in `skipped` with the reason."""
    path = Path(path)
    # A directory's *.pytorch.json files are torch-profiler traces written beside the results.
    files = sorted(f for f in path.glob("*.json") if not f.name.endswith(".pytorch.json")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise MelangeError(f"--from-results: {path} has no result files")
    out = []
    skipped = [] if skipped is None else skipped
    for f in files:
        try:
            objects = _json_objects(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MelangeError(f"--from-results: {f} is not readable JSON ({exc})") from None
        for data in objects:
            try:
                if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
                    points, why = _guidellm_points(data, gpu, skipped), ""
                elif isinstance(data, dict) and {"input_lens", "ttfts", "itls"} <= set(data):
                    points, why = _vllm_points(data, gpu)
                else:
                    raise MelangeError(f"--from-results: {f} is neither a `vllm bench serve --save-detailed` "
                                       "result nor a GuideLLM report")
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise MelangeError(f"--from-results: {f}: malformed result ({type(exc).__name__}: {exc})") from None
            if why:
                skipped.append({"file": f.name, "passed": False, "reason": f"skipped: {why}"})
            out += [(f.name, rate, recs) for rate, recs in points]
    return out


def import_results(path: str | Path, gpu: str, grid: BucketGrid, slo: Slo,
                   settings: SearchSettings | None = None) -> RunResult:
    """A profile (and the records, for fitting) from existing load-test results."""
    settings = settings or SearchSettings()
    verdicts: dict[tuple[int, int], list[tuple[float, bool]]] = {}
    result = RunResult(Profile(gpu, np.zeros(grid.shape), source="measured"))
    skipped: list[dict] = []
    for name, rate, recs in load_points(path, gpu, skipped):
        # The bucket of a load test is its completed requests' (a failed one's output length is
        # not known); its failures count against that bucket, never another one.
        done = [r for r in recs if r.error is None] or recs
        bi, bj = grid.bucket_of(np.array([r.input_tokens for r in done]), np.array([r.output_tokens for r in done]))
        cells, counts = np.unique(np.stack([bi, bj], 1), axis=0, return_counts=True)
        top = int(np.argmax(counts))
        i, j = (int(v) for v in cells[top])
        if counts[top] < BUCKET_SHARE * len(done) or i < 0 or j < 0:
            result.points.append({"file": name, "rate": rate_key(rate), "passed": False,
                                  "reason": "skipped: requests span several buckets or leave the grid"})
            continue
        # The shared warm-up (2x the slowest SLO-bound latency), but never more than a fifth of
        # a run whose length someone else chose.
        end_s = max(r.arrival_s for r in recs)
        warmup_s = min(settings.params.warmup * slo_bound_s(slo, grid.out_edges[j + 1] - 1), 0.2 * end_s)
        verdict = {"file": name, "bucket": [i, j], "rate": rate_key(rate),
                   **judge_point(recs, slo, settings, warmup_s)}
        result.points.append(verdict)
        result.records[(i, j, rate_key(rate))] = [_row(r) for r in recs]
        verdicts.setdefault((i, j), []).append((rate, bool(verdict["passed"])))
    result.points += skipped  # said, not dropped without a word
    for (i, j), vs in verdicts.items():
        lowest_fail = min((r for r, ok in vs if not ok), default=math.inf)
        passing = [r for r, ok in vs if ok and r < lowest_fail]
        result.profile.max_rate[i, j] = max(passing, default=0.0)
        if not passing:
            result.reasons[(i, j)] = "no result file passed"
    return result


def _row(rec: RequestRecord) -> dict:
    row = asdict(rec)
    row["itl_s"] = list(rec.itl_s) if rec.itl_s else None
    return row
