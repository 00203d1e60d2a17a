"""Fleet files: several models, each with its traffic split into SLO classes, on one fleet.

A fleet file names the models served (each a scenario file, or one written inline), how each
model's traffic splits into classes (each with its own SLO and profiles), and the limits they
share: GPUs of a catalog type (`caps`, e.g. at most 16 H100s in the region) and $/h (`budget`).
Every (model, class) is a **service**: a Scenario of its own with the class's share of the rate,
its SLO, and its profiles. Services never share an instance (DESIGN: a batch request on an
interactive instance takes KV cache and step time from it, so each class gets its own pool; the
router sends a request to its class's pool only). The joint optimizer (optimizer/joint.py)
plans them together; validation (validate/fleet.py) proves each pool on its own traffic.

See `melange/scenarios/fleets/two-models.yaml` for every key.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field, ValidationError, field_validator

from melange.core import MelangeError, Slo
from melange.fields import PositiveFloat
from melange.files import read_document
from melange.optimizer import make_problem
from melange.optimizer.joint import JointPlan, Shared, solve_joint
from melange.scenario import BUILTIN_SCENARIOS, Scenario, _one_line, scenario_from_document
from melange.scenario_schema import SloSpec, _Strict

BUILTIN_FLEETS = BUILTIN_SCENARIOS / "fleets"


class ClassSpec(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    share: Annotated[float, Field(gt=0, le=1)]  # of the model's rate
    slo: SloSpec
    profiles: str | None = None  # profile path for every GPU type, '{gpu}' = the type's name


class ModelEntry(_Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None  # default: scenario's
    scenario: str | dict[str, Any]  # a scenario file (beside this one, or built-in) or one inline
    rate: PositiveFloat | None = None  # req/s of the model; default: the scenario's
    classes: list[ClassSpec] | None = None  # default: one class, the scenario's SLO

    @field_validator("classes")
    @classmethod
    def _classes(cls, classes: list[ClassSpec] | None) -> list[ClassSpec] | None:
        if classes is None:
            return None
        if not classes:
            raise ValueError("give at least one class, or leave classes out")
        names = [c.name for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate class name {next(n for n in names if names.count(n) > 1)!r}")
        total = sum(c.share for c in classes)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"class shares sum to {total:.6g}, not 1")
        return classes


class FleetSpec(_Strict):
    name: str = "fleet"
    description: str = ""
    caps: dict[str, Annotated[int, Field(ge=0)]] = {}  # catalog GPU -> most GPUs over every model
    budget: PositiveFloat | None = None  # $/h
    prices: str | None = None  # aws | lambda | a CSV (melange/prices.py); default: each scenario's
    models: Annotated[list[ModelEntry], Field(min_length=1)]


@dataclass
class Fleet:
    """Services (model/class -> Scenario) and the limits they share."""

    name: str
    services: dict[str, Scenario]
    model_of: dict[str, str]  # service -> model entry name
    class_of: dict[str, str]  # service -> class name
    shared: Shared
    prices: str | None = None
    source: Path | None = None
    notes: list[str] = field(default_factory=list)

    def models(self) -> list[str]:
        """Model names, in file order."""
        return list(dict.fromkeys(self.model_of.values()))


def load_fleet(path: str | Path | None, *, prices: str | None = None) -> Fleet:
    """Load and check a fleet file (None: the built-in two-models fleet; a bare name: a built-in)."""
    source = BUILTIN_FLEETS / "two-models.yaml" if path is None else Path(path)
    if path is not None and not source.exists() and (BUILTIN_FLEETS / f"{path}.yaml").is_file():
        source = BUILTIN_FLEETS / f"{path}.yaml"
    data = read_document(source)
    try:
        spec = FleetSpec.model_validate(data)
    except ValidationError as exc:
        raise MelangeError(f"{source.name}: {_one_line(exc)}") from None
    try:
        return _fleet(spec, source, prices)
    except MelangeError as exc:
        raise MelangeError(f"{source.name}: {exc}") from None


def _fleet(spec: FleetSpec, source: Path, prices: str | None) -> Fleet:
    services, model_of, class_of, notes = {}, {}, {}, []
    for k, entry in enumerate(spec.models):  # every class's SLO alone, before any file is read
        for j, cls in enumerate(entry.classes or []):
            try:
                Slo(**cls.slo.model_dump())
            except MelangeError as exc:
                raise MelangeError(f"models[{k}].classes[{j}].{exc}") from None
    for k, entry in enumerate(spec.models):
        doc, base = _scenario_document(entry, source, k)
        model = entry.name or str(doc.get("name") or f"model{k}")
        if model in model_of.values():
            raise MelangeError(f"models[{k}].name: duplicate model name {model!r}")
        if entry.rate is not None:
            doc.setdefault("workload", {})["rate"] = entry.rate
        for cls in entry.classes or [None]:
            name = model if cls is None else f"{model}/{cls.name}"
            sub = _class_document(doc, cls, name)
            try:
                services[name] = scenario_from_document(sub, base)
            except MelangeError as exc:
                raise MelangeError(f"models[{k}] ({name}): {exc}") from None
            model_of[name], class_of[name] = model, "all" if cls is None else cls.name
    cloud = prices or spec.prices
    if cloud is not None:
        from melange.prices import apply_prices, read_prices

        table = read_prices(cloud)
        for name, sc in services.items():
            notes += [f"{name}: {n}" for n in apply_prices(sc, table, cloud)]
    hardware = {s: {g.name: (sc.hardware.get(g.name, g.name), g.gpus) for g in sc.gpus} for s, sc in services.items()}
    known = {h for per in hardware.values() for h, _ in per.values()}
    for h in spec.caps:
        if h not in known:
            raise MelangeError(f"caps.{h}: no model's GPU types use {h} (they use {', '.join(sorted(known))})")
    for s, sc in services.items():  # a type alone may not hold more than the shared cap
        services[s] = within_caps(sc, hardware[s], spec.caps)
    return Fleet(spec.name, services, model_of, class_of, Shared(dict(spec.caps), spec.budget, hardware),
                 cloud, source, notes)


def within_caps(sc: Scenario, hardware: dict[str, tuple[str, int]], left: dict[str, int],
            counts: dict[str, int] | None = None) -> Scenario:
    """`sc` with each type's max_count cut to what `left` GPUs of its hardware allow beside the
    service's other types in `counts` (its current plan); never below what it already has."""
    counts = counts or {}
    out = copy.copy(sc)
    gpus = []
    for g in sc.gpus:
        h, k = hardware[g.name]
        if h not in left:
            gpus.append(g)
            continue
        own = sum(n * hardware[t][1] for t, n in counts.items() if t != g.name and hardware[t][0] == h)
        most = max(counts.get(g.name, 0), (left[h] - own) // k)
        gpus.append(replace(g, max_count=most if g.max_count is None else min(g.max_count, most)))
    out.gpus = gpus
    return out


def _scenario_document(entry: ModelEntry, source: Path, k: int) -> tuple[dict, Path]:
    """The model's scenario document and the path its relative names resolve beside."""
    if isinstance(entry.scenario, dict):
        return copy.deepcopy(entry.scenario), source
    path = source.parent / entry.scenario
    if not path.is_file() and (BUILTIN_SCENARIOS / entry.scenario).is_file():
        path = BUILTIN_SCENARIOS / entry.scenario
    if not path.is_file():
        raise MelangeError(f"models[{k}].scenario: file {entry.scenario} not found (looked beside {source.name} "
                           "and among the built-in scenarios)")
    data = read_document(path)
    if not isinstance(data, dict):
        raise MelangeError(f"models[{k}].scenario: {entry.scenario} is not a scenario mapping")
    return copy.deepcopy(data), path


def _class_document(doc: dict, cls: ClassSpec | None, name: str) -> dict:
    """The model's scenario turned into one class's: its share of the rate, its SLO, its profiles."""
    sub = copy.deepcopy(doc)
    sub["name"] = name
    if cls is None:
        return sub
    workload = sub.get("workload")
    if isinstance(workload, dict) and isinstance(workload.get("rate"), (int, float)):
        workload["rate"] = workload["rate"] * cls.share
    sub["slo"] = cls.slo.model_dump(exclude_none=True)
    if cls.profiles is not None:
        for g in sub.get("gpus") or []:
            if isinstance(g, dict):
                # A tensor_parallel entry keeps '{gpu}' for its expansion to fill.
                named = cls.profiles.replace("{gpu}", str(g.get("name")))
                g["profile"] = cls.profiles if g.get("tensor_parallel") else named
    return sub


def instance_economics(sc: Scenario) -> list[dict]:
    """Per instance type of a service: $/h, the req/s one instance carries of the service's whole
    mix by its profile (1 / Σ_b share_b / max_rate_b), and $/h per req/s: why a TP degree wins.
    A type that cannot serve some bucket with traffic carries the mix at 0 (`serves_all` False)."""
    d = sc.workload.distribution
    out = []
    for g in sc.gpus:
        cap = sc.profiles[g.name].max_rate if g.name in sc.profiles else np.zeros_like(d)
        busy = d > 0
        serves_all = bool(np.all(cap[busy] > 0))
        rate = 1.0 / float(np.sum(d[busy] / cap[busy])) if serves_all else 0.0
        out.append({"type": g.name, "cost": g.cost, "gpus": g.gpus, "rate": rate, "serves_all": serves_all,
                    "per_rate": g.cost / rate if rate > 0 else float("inf")})
    return sorted(out, key=lambda e: e["per_rate"])


def split_caps(fleet: Fleet, plans: dict) -> dict[str, dict[str, int]]:
    """Each model's static share of every cap, in proportion to the GPUs of that hardware its
    services take in `plans` (planned without caps; largest remainder; even where none takes any)."""
    import math

    models = fleet.models()
    out: dict[str, dict[str, int]] = {m: {} for m in models}
    for h, cap in fleet.shared.caps.items():
        want = {m: sum(fleet.shared.used({s: plans[s].counts})[h] for s in plans if fleet.model_of[s] == m)
                for m in models}
        total = sum(want.values())
        exact = {m: cap * (want[m] / total if total else 1 / len(models)) for m in models}
        share = {m: math.floor(v) for m, v in exact.items()}
        for m in sorted(models, key=lambda m: share[m] - exact[m])[:cap - sum(share.values())]:
            share[m] += 1
        for m in models:
            out[m][h] = share[m]
    return out


def sub_fleet(fleet: Fleet, model: str, caps: dict[str, int]) -> Fleet:
    """One model's services as a fleet of their own under `caps` (no budget)."""
    names = [s for s in fleet.services if fleet.model_of[s] == model]
    return Fleet(model, {s: copy.copy(fleet.services[s]) for s in names}, {s: model for s in names},
                 {s: fleet.class_of[s] for s in names},
                 Shared(dict(caps), None, {s: fleet.shared.hardware[s] for s in names}), fleet.prices, fleet.source)


@dataclass
class FleetSolve:
    """The joint plan on the profiles, and each model planned alone on its static share of the caps."""

    joint: JointPlan
    split_caps: dict[str, dict[str, int]] | None = None
    split: dict[str, JointPlan] | None = None

    @property
    def split_cost(self) -> float | None:
        """$/h of the split plans together."""
        return None if self.split is None else sum(p.cost for p in self.split.values())


def solve_fleet(fleet: Fleet, *, split: bool = True) -> FleetSolve:
    """The joint MILP on each service's profiles (no simulation); with `split`, and when a cap
    binds, also each model on its share of the caps (proportional to its unconstrained use)."""
    problems = {s: make_problem(sc.workload, sc.gpus, sc.profiles, sc.solve) for s, sc in fleet.services.items()}
    options = next(iter(fleet.services.values())).solve
    joint = solve_joint(problems, fleet.shared, options)
    if not split or not fleet.shared.caps or joint.method == "separable":
        return FleetSolve(joint)
    free = solve_joint(problems, Shared({}, None, fleet.shared.hardware), options)
    caps = split_caps(fleet, free.plans)
    parts = {}
    for m in fleet.models():
        sub = sub_fleet(fleet, m, caps[m])
        try:
            parts[m] = solve_joint({s: problems[s] for s in sub.services}, sub.shared, options)
        except MelangeError:  # this model's static share cannot serve it: the split has no plan
            return FleetSolve(joint, caps, None)
    return FleetSolve(joint, caps, parts)
