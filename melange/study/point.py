"""One sweep point: a scenario with some settings changed, solved (and optionally validated).

A point is a plain dict of axis values, e.g. {"slice_factor": 8, "rate": 4.0, "slo_tpot_ms": 40.0,
"headroom": 0.1, "seed": 0}; an axis left out (or None) keeps the scenario's value. The scenario
travels as a self-contained document (`portable_document`: profile tables and the workload
distribution inlined, trace paths absolute), so a worker on another machine needs no scenario files
and the point's key (`point_key`) hashes everything that decides its result.
"""

from __future__ import annotations

import copy
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from melange.core import MelangeError, Plan, Profile, Slo
from melange.keys import RESULT_CODE_FILES, code_digest, digest, trace_digests
from melange.scenario import (
    BUILTIN_SCENARIOS,
    Scenario,
    load_scenario,
    read_document,
    scenario_from_document,
)

# `only`: "all" GPU types (Mélange) or one type's name (its single-type plan), for comparisons.
AXES = ("only", "slice_factor", "rate", "slo_tpot_ms", "headroom", "seed")
def scenario_path(name: str | Path) -> Path:
    """A scenario file: as given, or a built-in one named by stem."""
    path = Path(name)
    if not path.exists() and (BUILTIN_SCENARIOS / f"{name}.yaml").is_file():
        path = BUILTIN_SCENARIOS / f"{name}.yaml"
    return path


def portable_document(name: str | Path) -> tuple[dict, Scenario]:
    """(self-contained document, loaded scenario) for a scenario file in our format."""
    path = scenario_path(name)
    sc = load_scenario(path)  # validates everything before any work
    doc = read_document(path)
    if "gpu_info" in doc or "workload_distribution" in doc:
        raise MelangeError(f"{path.name}: sweeps need a scenario in Mélange's format, not the seed's")
    doc = copy.deepcopy(doc)
    w = doc["workload"]
    w["distribution"] = sc.workload.distribution.tolist()
    if sc.workload.trace:
        w["trace"] = _portable_trace(sc.workload.trace)
    if isinstance(w.get("arrival"), dict) and sc.workload.arrival.trace:
        w["arrival"]["trace"] = _portable_trace(sc.workload.arrival.trace)
    for g in doc["gpus"]:
        if isinstance(g.get("profile"), str):
            g["profile"] = sc.profiles[g["name"]].max_rate.tolist()
    return doc, sc


def _portable_trace(path: str) -> str:
    """A built-in trace by its name (every install, e.g. a Ray worker's, resolves it), another by
    its absolute path."""
    from melange.traces import BUILTIN_TRACES

    p = Path(path).resolve()
    return p.stem if p.parent == BUILTIN_TRACES.resolve() else str(p)


def _trace_digests(doc: dict) -> dict[str, str]:
    """Content hashes of the trace files a document points at (lengths or arrivals from them)."""
    from melange.traces import resolve_trace_path

    w = doc["workload"]
    names = [w.get("trace"), (w.get("arrival") or {}).get("trace")]
    return trace_digests([resolve_trace_path(n) for n in names if n])


def code_version() -> str:
    """Hash of the package version and the source a point's result depends on."""
    return code_digest(RESULT_CODE_FILES)


def point_key(doc: dict, point: dict, validate: bool, code: str) -> str:
    """Hash of everything that decides a point's result: scenario, axis values, settings, code."""
    return digest({"scenario": doc, "traces": _trace_digests(doc), "point": point, "validate": validate,
                   "code": code}, 24)


def swept_slo(sc: Scenario, tpot_ms: float | None) -> Slo | None:
    """The scenario's SLO with the point's TPOT limit (None: unchanged)."""
    if tpot_ms is None or sc.slo is None or tpot_ms == sc.slo.tpot_ms:
        return None
    return replace(sc.slo, tpot_ms=float(tpot_ms))


def check_slo_axis(doc: dict, sc: Scenario) -> None:
    """Refuse a TPOT axis unless every GPU's profile can be rebuilt for another SLO."""
    if sc.slo is None:
        raise MelangeError("--slo-tpot: the scenario has no slo to change")
    if not doc.get("model"):
        raise MelangeError("--slo-tpot: needs a catalog model in the scenario to rebuild profiles")
    for g in doc["gpus"]:
        if g.get("step_time") != "roofline" or not g.get("catalog"):
            raise MelangeError(f"--slo-tpot: gpus[{g['name']}] needs step_time: roofline and a catalog "
                               "GPU to rebuild its profile for another SLO")


def slo_profiles(doc: dict, sc: Scenario, slo: Slo, *, workers: int | None = 1,
                 progress: bool = False) -> dict[str, Profile]:
    """Sim-profiles of every GPU for `slo` (built once, then read from the disk cache)."""
    from melange.perf import build_profile, load_catalog
    from melange.perf.catalog import Instance

    check_slo_axis(doc, sc)
    catalog = load_catalog()
    profiles = {}
    by_name = {g["name"]: g for g in doc["gpus"]}
    for name in (gpu.name for gpu in sc.gpus):  # the point's GPU types only
        g = by_name[name]
        inst = catalog.instance(g["catalog"])
        if "gpus" in g:
            inst = Instance(inst.gpu, g["gpus"])
        built = build_profile(inst, doc["model"], slo, sc.workload.grid, engine=sc.engines[name],
                              catalog=catalog, step_model=sc.step_models[name], workers=workers,
                              progress=progress)
        profiles[name] = Profile(name, built.max_rate, source="simulated")
    return profiles


PREBUILT = "prebuilt_profiles"  # a document's swept-SLO profile tables, built once by the driver


def with_prebuilt_profiles(doc: dict, tpot_ms: float, profiles: dict[str, Profile]) -> dict:
    """`doc` carrying the profile tables of the TPOT limit `tpot_ms`, so a worker (a Ray node with
    neither the driver's cache nor the time to rebuild them) applies the point without building."""
    return {**doc, PREBUILT: {**doc.get(PREBUILT, {}), str(float(tpot_ms)): {g: p.max_rate.tolist()
                                                                              for g, p in profiles.items()}}}


def apply_point(doc: dict, point: dict) -> Scenario:
    """The scenario of `doc` with the point's axis values applied."""
    prebuilt = doc.get(PREBUILT, {})
    doc = {k: v for k, v in doc.items() if k != PREBUILT}
    sc = scenario_from_document(doc, Path("<sweep>"))
    only = point.get("only")
    if only not in (None, "all"):
        if only not in {g.name for g in sc.gpus}:
            raise MelangeError(f"only: no GPU type named {only!r} in the scenario")
        sc.gpus = [g for g in sc.gpus if g.name == only]
        sc.profiles = {only: sc.profiles[only]} if only in sc.profiles else {}
        sc.step_models = {k: v for k, v in sc.step_models.items() if k == only}
        sc.engines = {k: v for k, v in sc.engines.items() if k == only}
    if point.get("rate") is not None:
        sc.workload = replace(sc.workload, rate=float(point["rate"]))
    solve = {k: point[k] for k in ("slice_factor", "headroom") if point.get(k) is not None}
    sc.solve = replace(sc.solve, **solve)
    if point.get("seed") is not None:
        sc.simulation = sc.simulation.model_copy(update={"seed": int(point["seed"])})
    slo = swept_slo(sc, point.get("slo_tpot_ms"))
    if slo is not None:
        tables = prebuilt.get(str(float(slo.tpot_ms)))
        sc.profiles = ({g: Profile(g, np.asarray(tables[g], dtype=float), source="simulated") for g in sc.profiles}
                       if tables else slo_profiles(doc, sc, slo))
        sc.slo = slo
    return sc


def _plan_fields(plan: Plan) -> dict:
    return {"counts": dict(plan.counts), "cost": plan.cost, "solver_status": plan.status,
            "plan": plan.to_dict()}


def evaluate_point(scenario_doc: dict, point: dict, validate: bool) -> dict[str, Any]:
    """Solve (validate=False) or plan-and-validate (True) one point; a JSON-ready result row."""
    start = time.perf_counter()
    row: dict[str, Any] = {"status": "ok", "message": "", "counts": {}, "cost": None, "attainment": None,
                           "attainment_lo": None, "attainment_hi": None, "counted": None, "held": None,
                           "rounds": 0, "solve_s": 0.0, "sim_s": 0.0}
    try:
        sc = apply_point(scenario_doc, point)
        row["seed"] = sc.simulation.seed
        if not validate:
            from melange.optimizer import solve

            plan = solve(sc.workload, sc.gpus, sc.profiles, sc.solve)
            row.update(_plan_fields(plan), rounds=1, solve_s=plan.solve_time_s or 0.0)
        else:
            row.update(_validated(sc, single=point.get("only") not in (None, "all")))
    except MelangeError as exc:  # infeasible, or a point the scenario cannot take: a result too
        message = str(exc)
        row.update(status="infeasible" if message.startswith("infeasible") else "error", message=message)
    except Exception as exc:  # a bug at one point must not stop the others; a code fix changes the key
        row.update(status="error", message=f"{type(exc).__name__}: {exc}")
    row["wall_s"] = time.perf_counter() - start
    return row


def _validated(sc: Scenario, single: bool = False) -> dict:
    """The one call into melange.validate: `melange plan`'s answer (`plan_cheapest`: the
    calibrated mix, trimmed, or a single type that held for less), or for a one-type point
    (`only` = a GPU type) its validated baseline (fewest instances that hold; one fewer fails)."""
    from melange.validate import plan_cheapest, why_not_validated

    reason = why_not_validated(sc)
    if reason:
        raise MelangeError(f"--validate: {reason}")
    if single:
        return _baseline(sc)
    start = time.perf_counter()
    report = plan_cheapest(sc, seed=sc.simulation.seed)
    elapsed = time.perf_counter() - start
    out = _plan_fields(report.best or report.rounds[-1].plan)
    conf = report.validation
    solve_s = sum(r.plan.solve_time_s or 0.0 for r in report.rounds)
    out.update(held=report.best is not None, attainment=None if conf is None else conf.attainment,
               counted=None if conf is None else conf.counted,
               attainment_lo=None if conf is None else conf.interval[0],
               attainment_hi=None if conf is None else conf.interval[1],
               rounds=len(report.rounds), solve_s=solve_s, sim_s=max(0.0, elapsed - solve_s),
               choice=report.choice, trim=report.trim,
               mix_cost=None if report.mix is None else report.mix.cost,
               capacity=None if report.calibration is None else report.calibration.to_dict())
    if report.best is None:
        out["status"] = "not held"
    return out


def _baseline(sc: Scenario) -> dict:
    """A one-type scenario judged as `melange plan` judges a single type (`single_answer`: the
    fewest instances that hold, then the holdout check), as a point's result fields."""
    from melange.validate.cheapest import single_answer

    start = time.perf_counter()
    (gpu,) = [g.name for g in sc.gpus]
    b, plan, conf, log = single_answer(sc, gpu, seed=sc.simulation.seed)
    out: dict[str, Any] = {"held": plan is not None, "rounds": len(b.tried) + len(log), "baseline": b.to_dict(),
                           "holdout": log, "sim_s": time.perf_counter() - start}
    if plan is None:
        return {**out, "status": "not held", "message": b.reason or "did not hold on the holdout seeds"}
    out.update(_plan_fields(plan), attainment=conf.attainment, counted=conf.counted,
               attainment_lo=conf.interval[0], attainment_hi=conf.interval[1])
    return out
