"""GPU/model catalog and the per-iteration latency model: roofline from specs, or fitted.

    catalog = load_catalog()                      # built-in GPUs and models (+ your YAML files)
    model = step_model("A100-80GB", "llama-2-7b")  # a StepTimeModel for the simulator
    profile = build_profile("A10G", "llama-2-7b", Slo(120), BucketGrid.paper())  # sim-profile
"""

from __future__ import annotations

from melange.core import EngineConfig
from melange.perf.catalog import Catalog, GpuHardware, Instance, ModelSpec, load_catalog
from melange.perf.fit import FitResult, fit_records, fit_steps, nnls, samples_from_records
from melange.perf.profile_sim import build_profile, profile_document
from melange.perf.roofline import RooflineModel, RooflineParams, kv_capacity_tokens, roofline_model
from melange.rate_search import SearchParams

__all__ = ["Catalog", "FitResult", "GpuHardware", "Instance", "ModelSpec", "RooflineModel",
           "RooflineParams", "SearchParams", "build_profile", "fit_records", "fit_steps",
           "kv_capacity_tokens", "load_catalog", "nnls", "profile_document", "roofline_model",
           "samples_from_records", "step_model"]


def step_model(gpu: str, model: str, engine: EngineConfig | None = None, *,
               catalog: Catalog | None = None, params: RooflineParams | None = None) -> RooflineModel:
    """The roofline StepTimeModel of catalog `model` on catalog instance `gpu` ('A10G', '4xH100')."""
    catalog = catalog or load_catalog()
    return roofline_model(catalog.instance(gpu), catalog.model(model), engine, params, catalog)
