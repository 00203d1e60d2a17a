"""Instance types from the catalog: every (GPU × tensor-parallel degree) that can serve a model.

An instance of N GPUs serves one replica with tensor parallelism N. It is a candidate when
- N is at most the GPUs one node of that type holds (`max_gpus`),
- N divides the model's attention heads (vLLM refuses other degrees: each GPU takes whole heads),
- its weights fit and leave a KV cache of at least one longest request (vLLM's own arithmetic,
  `roofline.kv_capacity_tokens`: otherwise vLLM refuses to start with that max_model_len).
It is priced as N × the GPU's price. The reason a pair is left out is kept, so a user sees why.
"""

from __future__ import annotations

from dataclasses import dataclass

from melange.core import EngineConfig, MelangeError
from melange.perf.catalog import Catalog, Instance, ModelSpec
from melange.perf.roofline import kv_capacity_tokens

TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Candidate:
    """One (GPU × TP) pair for a model: the instance, or why it cannot serve."""

    gpu: str
    tp: int
    instance: Instance | None
    kv_tokens: int = 0
    reason: str = ""

    @property
    def name(self) -> str:
        """'H100' for one GPU, '4xH100' for four."""
        return self.gpu if self.tp == 1 else f"{self.tp}x{self.gpu}"


def candidate(catalog: Catalog, model: ModelSpec, gpu: str, tp: int, engine: EngineConfig) -> Candidate:
    """Whether `tp` GPUs of `gpu` can serve `model` under `engine`, and why not."""
    hw = catalog.gpu(gpu)
    if tp > hw.max_gpus:
        return Candidate(hw.name, tp, None, reason=f"a node holds at most {hw.max_gpus}")
    if model.heads % tp:
        return Candidate(hw.name, tp, None, reason=f"{tp} does not divide {model.heads} attention heads")
    inst = Instance(hw, tp)
    try:
        kv = kv_capacity_tokens(model, inst, engine)
    except MelangeError as exc:
        return Candidate(hw.name, tp, None, reason=str(exc))
    longest = engine.max_model_len or model.max_context
    if kv < longest:
        return Candidate(hw.name, tp, None, reason=f"KV cache of {kv:,} tokens is below one {longest:,}-token request")
    return Candidate(hw.name, tp, inst, kv)


def enumerate_instances(catalog: Catalog, model: ModelSpec, engine: EngineConfig | None = None,
                        gpus: list[str] | None = None, tp: tuple[int, ...] = TP_DEGREES) -> list[Candidate]:
    """Every (GPU × TP) pair of `gpus` (default: the whole catalog) for `model`, feasible or not."""
    engine = engine or EngineConfig()
    names = gpus if gpus is not None else [g.name for g in catalog.gpus.values()]
    for n in tp:
        if n not in TP_DEGREES:
            raise MelangeError(f"tensor_parallel: {n} is not one of {', '.join(map(str, TP_DEGREES))}")
    return [candidate(catalog, model, g, n, engine) for g in names for n in tp]
