"""Least-squares fit of the linear step-time model to measurements.

    t_step = alpha + beta_prefill·prefill_tokens + beta_decode·decode_seqs + beta_kv·context_tokens

Two kinds of input:
- per-step samples (a table of prefill_tokens, decode_seqs, context_tokens, step_s), e.g. from an
  engine's step log: fitted directly;
- the profiler's per-request records (RequestRecord fields, optionally an `itl_s` list of
  inter-token gaps per request). A client never sees engine steps, so we rebuild them from the
  requests' timelines — see `samples_from_records`.

Coefficients are non-negative (a negative cost per token is never physical and makes simulated
step times negative at the edges of the data); the solver is Lawson–Hanson NNLS on numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from melange.core import LinearStepModel, MelangeError

FEATURES = ("steps", "prefill_tokens", "decode_seqs", "context_tokens")
TIME_POINTS = 16  # sample points per whole-request interval when no ITL list is given


def nnls(a: np.ndarray, b: np.ndarray, max_iter: int | None = None, tol: float = 1e-10) -> np.ndarray:
    """x >= 0 minimising ||a·x − b||₂ (Lawson–Hanson active-set method)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    max_iter = max_iter or 3 * n + 10
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= tol * max(1.0, np.abs(w).max())).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            # Step back along x -> z until the first passive coefficient hits 0, drop it.
            blocking = passive & (z <= 0)
            step = np.min(x[blocking] / (x[blocking] - z[blocking]))
            x = x + step * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x


@dataclass(frozen=True)
class FitResult:
    """Fitted coefficients, the model they make, and how well they explain the samples."""

    model: LinearStepModel
    rmse_s: float
    r2: float
    samples: int


def fit_steps(samples: pd.DataFrame, kv_capacity_tokens: int) -> FitResult:
    """Fit the linear model to step samples: columns prefill_tokens, decode_seqs,
    context_tokens, step_s and optionally `steps` (engine steps the time covers, default 1)."""
    missing = [c for c in ("prefill_tokens", "decode_seqs", "context_tokens", "step_s") if c not in samples]
    if missing:
        raise MelangeError(f"fit: samples lack column {missing[0]!r}")
    frame = samples.dropna(subset=["step_s"])
    if len(frame) < len(FEATURES):
        raise MelangeError(f"fit: need at least {len(FEATURES)} samples, got {len(frame)}")
    steps = frame["steps"].to_numpy(float) if "steps" in frame else np.ones(len(frame))
    a = np.column_stack([steps] + [frame[c].to_numpy(float) for c in FEATURES[1:]])
    y = frame["step_s"].to_numpy(float)
    # Scale columns to unit norm: context counts are ~1e5 times the intercept column, which
    # would otherwise dominate the active-set decisions.
    norms = np.linalg.norm(a, axis=0)
    norms[norms == 0] = 1.0
    coef = nnls(a / norms, y) / norms
    pred = a @ coef
    resid = y - pred
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return FitResult(
        model=LinearStepModel(*(float(c) for c in coef), kv_capacity_tokens=int(kv_capacity_tokens)),
        rmse_s=float(np.sqrt((resid ** 2).mean())),
        r2=1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0,
        samples=len(frame),
    )


# --- records -> step samples ---------------------------------------------------------------

@dataclass(frozen=True)
class _Timeline:
    """Per-request times (s from the run's start) and lengths, successful requests only."""

    first: np.ndarray  # first output token
    end: np.ndarray  # last output token
    sched: np.ndarray  # first scheduled (arrival + queue_s); NaN when unknown
    inp: np.ndarray
    out: np.ndarray
    token_times: np.ndarray | None  # sorted times of every output token of every request (ITLs)

    def _before(self, key: np.ndarray, value: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Sum of `value` over requests whose `key` time is < t, for each t (prefix sums)."""
        order = np.argsort(key)
        cum = np.r_[0.0, np.cumsum(value[order])]
        return cum[np.searchsorted(key[order], t, side="left")]

    def active(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(decoding sequences, their total context tokens) at each time in `t`.

        A request decodes at t when first < t <= end; its context is its prompt plus the tokens
        it made before t. Sums over that set are prefix sums by `first` minus those by `end`,
        so each time costs O(log n)."""
        t = np.asarray(t, dtype=float)
        ones = np.ones_like(self.first)
        # `first < t` and `end < t` via side="left" on sorted keys.
        decode = self._before(self.first, ones, t) - self._before(self.end, ones, t)
        if self.token_times is None:
            # Without ITLs assume tokens came out evenly between the first and the last:
            # made(t) = 1 + (out - 1)(t - first)/span = a + b·t while decoding.
            span = np.maximum(self.end - self.first, 1e-12)
            b = (self.out - 1) / span
            a = self.inp + 1 - b * self.first
            context = (self._before(self.first, a, t) - self._before(self.end, a, t)
                       + t * (self._before(self.first, b, t) - self._before(self.end, b, t)))
        else:
            # Tokens made before t by decoding requests = all tokens before t minus those of
            # requests already finished.
            made = np.searchsorted(self.token_times, t, side="left") - self._before(self.end, self.out, t)
            context = self._before(self.first, self.inp, t) - self._before(self.end, self.inp, t) + made
        return decode, context

    def prefills_in(self, lo: np.ndarray, hi: np.ndarray, tol: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prefill steps, prompt tokens, end of the last of them, else lo) whose first tokens
        came out in each (lo, hi]."""
        order = np.argsort(self.first)
        first, inp = self.first[order], self.inp[order]
        # Prompts whose first tokens coincide (within tol) were prefilled in one step.
        new_step = np.r_[True, np.diff(first) > tol]
        step_id = np.cumsum(new_step)
        cum_tokens = np.r_[0.0, np.cumsum(inp)]
        i0 = np.searchsorted(first, lo, side="right")
        i1 = np.searchsorted(first, hi, side="right")
        last = len(first) - 1
        steps = np.where(i1 > i0, step_id[np.maximum(i1 - 1, 0)] - step_id[np.minimum(i0, last)] + 1, 0)
        last_end = np.where(i1 > i0, first[np.maximum(i1 - 1, 0)], lo)
        return steps.astype(float), cum_tokens[i1] - cum_tokens[i0], last_end


def _timeline(records: pd.DataFrame) -> tuple[_Timeline, list[np.ndarray] | None]:
    ok = records[records["error"].isna()] if "error" in records else records
    ok = ok[ok["output_tokens"] >= 2]
    if len(ok) == 0:
        raise MelangeError("fit: no successful request with at least 2 output tokens")
    arrival = ok["arrival_s"].to_numpy(float)
    first = arrival + ok["ttft_s"].to_numpy(float)
    queue = ok["queue_s"].to_numpy(float) if "queue_s" in ok else np.full(len(ok), np.nan)
    tokens = None
    if "itl_s" in ok and ok["itl_s"].map(lambda v: isinstance(v, (list, np.ndarray)) and len(v) > 0).all():
        tokens = [f + np.r_[0.0, np.cumsum(np.asarray(itl, dtype=float))] for f, itl in zip(first, ok["itl_s"])]
    return _Timeline(first, arrival + ok["e2e_s"].to_numpy(float), arrival + queue,
                     ok["input_tokens"].to_numpy(float), ok["output_tokens"].to_numpy(float),
                     np.sort(np.concatenate(tokens)) if tokens else None), tokens


def samples_from_records(records: pd.DataFrame | list[dict], *, prefill_steps: bool = True,
                         step_model: LinearStepModel | None = None, max_samples: int = 20000,
                         seed: int = 0, tol_s: float = 1e-6) -> pd.DataFrame:
    """Rebuild per-step samples from request records.

    Decode, with `itl_s` lists: every inter-token gap of a request is one sample — the decode
    step of the batch running at the gap's end (sequences in decode, their context), plus any
    prefill steps that ran inside the gap (prompts whose first token came out in it); the sample
    covers `steps` engine steps and those prompt tokens.
    Decode, without ITLs: each request gives one sample, its mean decode gap, against the batch
    averaged over its decode period. The average must be over steps, not seconds (long steps
    would count more); steps come at 1/step_time per second, so given a `step_model` (a first
    fit) points are weighted by 1/step_time, else uniformly in time.
    Prefill (when `queue_s` is known): the step that emitted a group of first tokens ran from the
    group's scheduling to its first token and prefilled the group's prompts.
    `prefill_steps`: the engine runs prompts in steps of their own (vLLM without chunked
    prefill), so a gap that contains a prefill spans an extra step.
    """
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    tl, tokens = _timeline(frame)
    rng = np.random.default_rng(seed)
    rows = []
    if tokens is not None:
        lo = np.concatenate([tk[:-1] for tk in tokens])
        hi = np.concatenate([tk[1:] for tk in tokens])
        if len(lo) > max_samples:
            pick = rng.choice(len(lo), max_samples, replace=False)
            lo, hi = lo[pick], hi[pick]
        n_pre, pre_tokens, last_prefill = tl.prefills_in(lo, hi, tol_s)
        # The gap ends with the decode step that made the token: take the batch in the middle
        # of that step, after any prefill that ran in the gap (its prompts then decode too).
        decode, context = tl.active((np.maximum(lo, last_prefill) + hi) / 2)
        rows.append(pd.DataFrame({"steps": 1 + (n_pre if prefill_steps else 0), "prefill_tokens": pre_tokens,
                                  "decode_seqs": decode, "context_tokens": context, "step_s": hi - lo}))
    else:
        gaps = tl.out - 1
        frac = (np.arange(TIME_POINTS) + 0.5) / TIME_POINTS
        points = tl.first[:, None] + (tl.end - tl.first)[:, None] * frac
        decode, context = (v.reshape(points.shape) for v in tl.active(points.ravel()))
        weight = np.ones_like(decode)
        if step_model is not None:
            weight = 1.0 / np.maximum(step_model.alpha + step_model.beta_decode * decode
                                      + step_model.beta_kv * context, 1e-9)
        weight /= weight.sum(axis=1, keepdims=True)
        n_pre, pre_tokens, _ = tl.prefills_in(tl.first, tl.end, tol_s)
        rows.append(pd.DataFrame({
            "steps": 1 + (n_pre / gaps if prefill_steps else 0),
            "prefill_tokens": pre_tokens / gaps,
            "decode_seqs": (decode * weight).sum(axis=1),
            "context_tokens": (context * weight).sum(axis=1),
            "step_s": (tl.end - tl.first) / gaps}))
    if np.isfinite(tl.sched).all():
        order = np.argsort(tl.first)
        first, sched, inp = tl.first[order], tl.sched[order], tl.inp[order]
        group = np.cumsum(np.r_[True, np.diff(first) > tol_s])
        g = pd.DataFrame({"g": group, "first": first, "sched": sched, "inp": inp}).groupby("g")
        agg = g.agg(first=("first", "max"), sched=("sched", "max"), prefill=("inp", "sum"))
        start = agg["sched"].to_numpy()
        dec, ctx = tl.active(start) if not prefill_steps else (np.zeros(len(agg)), np.zeros(len(agg)))
        rows.append(pd.DataFrame({"steps": 1.0, "prefill_tokens": agg["prefill"].to_numpy(),
                                  "decode_seqs": dec, "context_tokens": ctx,
                                  "step_s": agg["first"].to_numpy() - start}))
    out = pd.concat(rows, ignore_index=True)
    return out[out["step_s"] > 0].reset_index(drop=True)


def fit_records(records: pd.DataFrame | list[dict], kv_capacity_tokens: int, *,
                prefill_steps: bool = True, iterations: int = 3, seed: int = 0) -> FitResult:
    """Fit the linear step model to request records (see `samples_from_records`); without ITLs
    the fit is repeated, each time weighting the batch averages by the previous fit's steps."""
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(records)
    has_itl = "itl_s" in frame
    result = fit_steps(samples_from_records(frame, prefill_steps=prefill_steps, seed=seed), kv_capacity_tokens)
    for _ in range(0 if has_itl else iterations - 1):
        samples = samples_from_records(frame, prefill_steps=prefill_steps, step_model=result.model, seed=seed)
        result = fit_steps(samples, kv_capacity_tokens)
    return result
