"""Exact capacity arithmetic: a type's load as a fraction, so no solver tolerance decides a count.

The problem's data are floats (rates, capacities); every float is a rational number, so the load
    load[g] = sum_b  r[b] · w[b,g] / W[b] / cap[b,g]        (w[b,g] / W[b]: b's share on g)
has an exact value, and the fewest instances that carry it is ceil(load[g]). A float sum is
within (B + 5)·2^-53 of it, relative; only when that sum lies within 1e-9 of an integer is the
rational sum needed to decide the ceiling.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

NEAR_INTEGER = 1e-9  # relative: float sums further than this from an integer decide ceil alone


def shares_of(weights: np.ndarray) -> np.ndarray:
    """Per-bucket shares from nonnegative weights (slice counts, or an LP's shares)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def float_loads(rate: np.ndarray, cap: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(G,) approximate load per type: instances needed to carry the weighted traffic."""
    share = shares_of(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(share > 0, share * rate[:, None] / np.where(cap > 0, cap, np.nan), 0.0)
    return per.sum(axis=0)


def exact_load(rate: np.ndarray, cap: np.ndarray, weights: np.ndarray, g: int) -> Fraction:
    """Type g's load, in rational arithmetic (inf-free: raises if g is given a bucket it cannot serve)."""
    w = np.clip(np.asarray(weights, dtype=float), 0.0, None)
    total = Fraction(0)
    for b in np.nonzero(w[:, g] > 0)[0]:
        if not cap[b, g] > 0:
            raise ValueError(f"type {g} is given traffic of bucket {b} it cannot serve")
        row = sum((Fraction(float(v)) for v in w[b]), Fraction(0))
        total += Fraction(float(rate[b])) * Fraction(float(w[b, g])) / (row * Fraction(float(cap[b, g])))
    return total


def ceil_loads(rate: np.ndarray, cap: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(G,) exact ceil of each type's load: the fewest instances that carry it, by any amount."""
    approx = float_loads(rate, cap, weights)
    out = np.zeros(len(approx), dtype=np.int64)
    for g, f in enumerate(approx):
        if not np.isfinite(f):
            raise ValueError(f"type {g} is given traffic it cannot serve")
        if abs(f - round(f)) > NEAR_INTEGER * max(1.0, f):
            out[g] = math.ceil(f)
        else:
            out[g] = math.ceil(exact_load(rate, cap, weights, g))
    return out

