"""Solve → simulate → tighten → re-solve, until a plan holds on traffic it was never tuned on.

Each round solves the MILP and replays the scenario's traffic through the plan on the *tuning*
seed. A plan that passes there (acceptance rule + per-bucket floor, see `check.py`) goes to
confirmation: runs on fresh seeds the loop has never tightened on. It is "held" only if every
confirmation run passes and the pooled per-bucket floor holds. When a run fails, its evidence
lowers `max_rate` of the (bucket, GPU type) cells that explain it, and the problem is solved
again; a confirmation seed whose run was used to tighten is spent and never confirms again.

Tightening: a cell with enough requests below the target (or in a bucket below the floor) loses
`step` of its rate, more the worse it missed; when a GPU type's instances were unstable (queue
growing, completions not keeping up), every cell it serves shrinks to its throughput ratio.
Rounds only tighten, so the first plan that holds is the cheapest the loop can prove.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from melange.core import MelangeError, Plan, Profile
from melange.optimizer import solve
from melange.scenario import Scenario
from melange.validate.check import (
    Confirmation,
    RunCheck,
    RunSettings,
    confirm,
    floor_failures,
    floor_reason,
    itl_limit,
    pool,
    run_check,
    run_settings,
    score,
)

MIN_CELL_REQUESTS = 20  # fewer requests in a cell say too little to tighten it
MIN_FACTOR = 0.5  # one tightening never cuts a cell below half its rate
RETIGHTEN = 0.7  # factor of each further cut of a cell the re-solved plan did not answer
MAX_RETIGHTEN = 15  # re-solves per round (0.7^15: a cell can drop to 0.5 % of its rate)


@dataclass
class Round:
    """One solve + simulate (+ confirm) round."""

    index: int
    plan: Plan
    attainment: float | None  # on the tuning seed; None when the plan was not simulated
    held: bool
    tightened: list[dict] = field(default_factory=list)  # {bucket, gpu, attainment, old, new, why}
    reason: str = ""  # why the tuning run failed ('' when it passed)
    confirmation: Confirmation | None = None

    def why_not(self) -> str:
        """Why this round's plan did not hold ('' if it did): the tuning run's or the confirmation's reason."""
        if self.held:
            return ""
        conf = self.confirmation.reasons[:1] if self.confirmation and self.confirmation.reasons else [""]
        return self.reason or conf[0]

    def to_dict(self) -> dict:
        """JSON-ready form, complete enough to resume from."""
        return {"round": self.index, "plan": self.plan.to_dict(), "attainment": self.attainment,
                "held": self.held, "reason": self.reason, "tightened": self.tightened,
                "confirmation": None if self.confirmation is None else self.confirmation.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> Round:
        """Inverse of to_dict."""
        conf = d.get("confirmation")
        return cls(int(d["round"]), Plan.from_dict(d["plan"]), d["attainment"], bool(d["held"]),
                   list(d["tightened"]), d.get("reason", ""),
                   None if conf is None else Confirmation.from_dict(conf))


@dataclass
class PlanReport:
    """Every round, the cheapest plan that held (None if none did) and its confirmation."""

    rounds: list[Round]
    best: Plan | None
    target: float | None
    validation: Confirmation | None = None  # the held plan's confirmation
    settings: RunSettings | None = None
    tuning_seed: int | None = None
    resumed: int = 0  # rounds taken from a previous run instead of simulated
    # Set by `cheapest.plan_cheapest`: what else was examined and which candidate is the answer.
    calibration: Any = None  # capacity.Calibration
    singles: dict | None = None  # gpu -> baselines.BaselineResult
    trim: dict | None = None  # {"from_cost", "tried"}
    choice: str | None = None  # "mix", or the GPU type whose single-type fleet held for less
    mix: Plan | None = None  # the held mix when a single type was chosen over it
    stopped: str = ""  # why the loop stopped before a plan held, when not for lack of rounds
    holdout: list[dict] | None = None  # the answer's last check, on seeds no other step simulated

    @property
    def held(self) -> bool:
        """Whether a plan held on fresh traffic."""
        return self.best is not None

    def validation_dict(self) -> dict:
        """The `validation` object of plan.json."""
        # A confirmation is reported only beside the plan it confirmed: the held one's, else the
        # last round's own (an earlier round's figures belong to another plan).
        conf = self.validation or (self.rounds[-1].confirmation if self.rounds else None)
        s = self.settings
        return {
            "held": self.held, "target": self.target, "choice": self.choice,
            "attainment": None if conf is None else conf.attainment,
            "interval": None if conf is None else [round(v, 6) for v in conf.interval],
            "counted": None if conf is None else conf.counted,
            "seeds": None if conf is None else conf.seeds,
            "reasons": [] if conf is None else conf.reasons,
            "tuning_seed": self.tuning_seed,
            "requests": None if s is None else s.requests,
            "duration_s": None if s is None else s.duration_s,
            "warmup_s": None if s is None else s.warmup_s,
            "rounds": [{"round": r.index, "cost": r.plan.cost, "counts": r.plan.counts,
                        "attainment": r.attainment, "held": r.held, "reason": r.why_not(),
                        "tightened": len(r.tightened)} for r in self.rounds],
            "capacity": None if self.calibration is None else self.calibration.to_dict(),
            "trim": self.trim, "holdout": self.holdout,
            "mix": None if self.mix is None else {"counts": self.mix.counts, "cost": self.mix.cost},
        }

    def to_dict(self) -> dict:
        """JSON-ready form: the plan's own keys at the top level, plus `validation`."""
        final = self.best or (self.rounds[-1].plan if self.rounds else None)
        return {**({} if final is None else final.to_dict()), "validation": self.validation_dict()}


def tighten(profiles: dict[str, Profile], evidence: list[RunCheck], target: float, step: float,
            only: set[tuple[str, int, int]] | None = None,
            itl_limit_s: float | None = None) -> tuple[dict[str, Profile], list[dict]]:
    """Lower max_rate of the cells (gpu, i, j) the failed runs in `evidence` blame (module
    docstring), or of those among them in `only`; `itl_limit_s`: the paper's averaged SLO."""
    new = {name: replace(p, max_rate=p.max_rate.copy()) for name, p in profiles.items()}
    factors: dict[tuple[str, int, int], tuple[float, float | None, str]] = {}
    cells = pool([r.cells for r in evidence], ["bucket_in", "bucket_out", "gpu"])
    cells = cells[(cells["bucket_in"] >= 0) & (cells["bucket_out"] >= 0)]  # outside the grid: no cell
    pooled = floor_failures(pool([r.buckets for r in evidence], ["bucket_in", "bucket_out"]), target, itl_limit_s)
    low = {tuple(f["bucket"]) for f in pooled + [f for r in evidence for f in r.floor_failures]}
    for row in cells.itertuples():
        att, reached = row.met / row.requests, score(row, target, itl_limit_s)
        bucket = (int(row.bucket_in), int(row.bucket_out))
        if reached >= 1 or (row.requests < MIN_CELL_REQUESTS and bucket not in low):
            continue
        factors[(row.gpu, *bucket)] = (min(step, max(MIN_FACTOR, reached)), att, "attainment")
    for gpu in unstable_gpus(evidence):
        ratio = min(r.gpu_stability[gpu].throughput_ratio or 1.0 for r in evidence if gpu in r.gpu_stability)
        factor = min(step, max(MIN_FACTOR, ratio))
        for row in cells[cells["gpu"] == gpu].itertuples():
            key = (gpu, int(row.bucket_in), int(row.bucket_out))
            if key not in factors or factors[key][0] > factor:
                factors[key] = (factor, row.met / row.requests, "unstable")
    changes = []
    for (gpu, i, j), (factor, att, why) in sorted(factors.items()):
        if gpu not in new or (only is not None and (gpu, i, j) not in only):
            continue
        old = float(new[gpu].max_rate[i, j])
        new[gpu].max_rate[i, j] = old * factor
        changes.append({"bucket": [i, j], "gpu": gpu, "attainment": None if att is None else round(float(att), 4),
                        "old": old, "new": old * factor, "why": why})
    return new, changes


def tighten_until_changed(sc: Scenario, plan: Plan, profiles: dict[str, Profile], evidence: list[RunCheck],
                          step: float, history: dict[tuple, float]) -> tuple[dict[str, Profile], list[dict]]:
    """Tighten on `evidence`, then re-tighten each blamed cell the re-solved plan does not answer
    (`answered`): the evidence still stands, since the plan it came from failed. So the next
    round simulates a plan that answers every blamed cell, not one a slice away from the last.
    `history`: each cell's attainment when last blamed; a cell no better than then was not
    helped by more instances (a latency, not a capacity, miss), so only moving its traffic counts."""
    first: dict[tuple, dict] = {}
    pending = None
    for _ in range(MAX_RETIGHTEN):
        profiles, changes = tighten(profiles, evidence, sc.slo.attainment, step if pending is None else RETIGHTEN,
                                    only=pending, itl_limit_s=itl_limit(sc.slo))
        for c in changes:
            key = (c["gpu"], *c["bucket"])
            first[key] = {**c, "old": first[key]["old"]} if key in first else c
        if not changes:
            break
        try:
            new = solve(sc.workload, sc.gpus, profiles, sc.solve)
        except MelangeError:  # tightened past the availability caps: the next round says so
            break
        pending = {(c["gpu"], *c["bucket"]) for c in changes
                   if not answered(new, plan, c, sc.slo.attainment, stubborn=stubborn(c, history))}
        if not pending:
            break
    for c in first.values():
        history[(c["gpu"], *c["bucket"])] = c["attainment"]
    return profiles, [first[k] for k in sorted(first)]


def stubborn(change: dict, history: dict[tuple, float]) -> bool:
    """Whether a blamed cell missed as badly as when it was last blamed (more instances did not help)."""
    before = history.get((change["gpu"], *change["bucket"]))
    return before is not None and change["attainment"] is not None and change["attainment"] <= before + 0.01


def answered(new: Plan, old: Plan, change: dict, target: float, stubborn: bool = False) -> bool:
    """Whether `new` answers a blamed cell: more instances of its GPU type (unless `stubborn`), or
    so little of its bucket left there that, at the attainment measured, the bucket would reach
    `target`."""
    gpu, (i, j) = change["gpu"], change["bucket"]
    if new.counts.get(gpu, 0) > old.counts.get(gpu, 0) and not stubborn:
        return True
    before, after = float(old.share[gpu][i, j]), float(new.share[gpu][i, j])
    att = change["attainment"]
    enough = before if att is None or att >= 1 else min(before, (1 - target) / (1 - att))
    return after < before - 1e-9 and after <= enough + 1e-9


def unstable_gpus(evidence: list[RunCheck]) -> list[str]:
    """GPU types whose instances could not keep up in an unstable run (the worst one at least)."""
    out: set[str] = set()
    for r in evidence:
        if r.verdict.stable:
            continue
        bad = [g for g, v in r.gpu_stability.items() if v.reason.startswith("unstable")]
        if not bad and r.gpu_stability:  # no single type is to blame: the one keeping up least
            bad = [min(r.gpu_stability, key=lambda g: r.gpu_stability[g].throughput_ratio or 1.0)]
        out.update(bad)
    return sorted(out)


def apply_changes(profiles: dict[str, Profile], changes: list[dict]) -> dict[str, Profile]:
    """Replay a finished round's tightening (resume)."""
    new = {name: replace(p, max_rate=p.max_rate.copy()) for name, p in profiles.items()}
    for c in changes:
        new[c["gpu"]].max_rate[tuple(c["bucket"])] = c["new"]
    return new


def plan_and_validate(sc: Scenario, *, max_rounds: int = 5, requests: int | None = None,
                      duration_s: float | None = None, seed: int | None = None, confirm_runs: int = 2,
                      step: float = 0.9, resume: list[dict] | None = None, workers: int = 1,
                      on_round: Callable[[Round], None] | None = None,
                      progress: Callable[[str], None] | None = None) -> PlanReport:
    """The loop of the module docstring; without an SLO or step-time models, solve only.

    `resume`: rounds (Round.to_dict) a previous run with the same inputs finished; they are
    replayed, not simulated. `workers`: processes for the confirmation runs (same results).
    `on_round` sees each new round as it ends; `progress` gets short notes."""
    if confirm_runs < 1:
        raise MelangeError("confirm_runs: must be >= 1")
    tuning = sc.simulation.seed if seed is None else seed
    profiles = sc.profiles
    if why_not_validated(sc):
        round_ = Round(1, solve(sc.workload, sc.gpus, profiles, sc.solve), None, False)
        if on_round:
            on_round(round_)
        return PlanReport([round_], None, sc.slo.attainment if sc.slo else None, tuning_seed=tuning)
    settings = run_settings(sc, requests=requests, duration_s=duration_s)
    report = PlanReport([], None, sc.slo.attainment, settings=settings, tuning_seed=tuning)
    fresh = tuning + 1  # next confirmation seed; seeds only move forward
    history: dict[tuple, float] = {}  # (gpu, i, j) -> attainment when last tightened
    for d in resume or []:
        round_ = Round.from_dict(d)
        report.rounds.append(round_)
        profiles = apply_changes(profiles, round_.tightened)
        history.update({(c["gpu"], *c["bucket"]): c["attainment"] for c in round_.tightened})
        if round_.confirmation is not None:
            fresh = max(fresh, max(round_.confirmation.seeds) + 1)
        if round_.held:
            report.best, report.validation = round_.plan, round_.confirmation
    report.resumed = len(report.rounds)
    if report.held or (report.rounds and not report.rounds[-1].tightened):
        return report
    for index in range(len(report.rounds) + 1, max_rounds + 1):
        try:
            plan = solve(sc.workload, sc.gpus, profiles, sc.solve)
        except MelangeError as exc:
            if not report.rounds:
                raise  # the scenario itself cannot be solved
            report.stopped = f"the tightened profiles no longer fit: {exc}"
            break
        if progress:
            progress(f"round {index}: simulating ${plan.cost:.3f}/h on the tuning seed {tuning}")
        tune = run_check(sc, plan, tuning, settings)
        round_ = Round(index, plan, tune.verdict.attainment, False, reason=tune_reason(tune, sc.workload.grid))
        evidence = [tune]
        if tune.passed:
            round_.confirmation = confirm(sc, plan, list(range(fresh, fresh + confirm_runs)), settings,
                                          workers=workers, progress=progress)
            round_.held = round_.confirmation.held
            evidence = [r for r in round_.confirmation.runs if not r.passed] or round_.confirmation.runs
            if not round_.held:
                fresh = max(round_.confirmation.seeds) + 1  # tightened on below: spent
        report.rounds.append(round_)
        if round_.held:
            report.best, report.validation = plan, round_.confirmation
        else:
            profiles, round_.tightened = tighten_until_changed(sc, plan, profiles, evidence, step, history)
        if on_round:
            on_round(round_)
        if round_.held or not round_.tightened:
            break  # held, or nothing left that a cell can explain
    return report


def tune_reason(tune: RunCheck, grid) -> str:
    """Why the tuning run failed, in one phrase ('' when it passed), buckets named by their lengths."""
    if not tune.verdict.passed:
        return tune.verdict.reason
    if tune.floor_failures:
        return f"{len(tune.floor_failures)} bucket(s) below the floor, e.g. {floor_reason(tune.floor_failures[0], grid)}"
    return ""


def untested_gpus(sc: Scenario) -> list[str]:
    """GPU types the simulator cannot model (no step-time model in the scenario)."""
    return [g.name for g in sc.gpus if g.name not in sc.step_models]


def why_not_validated(sc: Scenario) -> str | None:
    """Why the loop can only solve this scenario, or None when it can validate."""
    if sc.slo is None:
        return "the scenario has no slo"
    missing = untested_gpus(sc)
    return f"no step-time model for {', '.join(missing)}" if missing else None
