"""Cloud prices for the catalog's GPUs, from SkyPilot's public catalog format.

A price table is a CSV with columns `accelerator,count,instance_type,region,price,spot_price`
(one row per instance type, $/h for the whole instance): the dated snapshots shipped in
`scenarios/prices/` (`aws`, `lambda`; see their README) or one a user extracts the same way.
SkyPilot's own `vms.csv` (columns AcceleratorName, AcceleratorCount, InstanceType, Price,
SpotPrice, Region) reads too.

A catalog GPU's price is the lowest on-demand $/h per GPU among the instance types of its
SkyPilot accelerator (an instance of N GPUs is then priced N × that, as everywhere in Mélange).
Where SkyPilot names one accelerator for two cards (H100 SXM and PCIe, A100-80GB SXM and PCIe),
the instance type's name tells them apart. A GPU the cloud does not sell is left out of a plan.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

from melange.core import MelangeError

PRICES_DIR = Path(__file__).parent / "scenarios" / "prices"
# catalog GPU -> (SkyPilot accelerator, "pcie": PCIe instance types only, "sxm": all others, None: any)
ACCELERATORS = {
    "L4": ("L4", None), "A10G": ("A10G", None), "T4": ("T4", None), "L40S": ("L40S", None),
    "A40": ("A40", None), "A100-40GB": ("A100", None), "A100-80GB": ("A100-80GB", "pcie"),
    "A100-80GB-SXM": ("A100-80GB", "sxm"), "H100": ("H100", "sxm"), "H100-PCIe": ("H100", "pcie"),
    "H200": ("H200", None),
}
_COLUMNS = {"accelerator": "AcceleratorName", "count": "AcceleratorCount", "instance_type": "InstanceType",
            "price": "Price", "region": "Region", "spot_price": "SpotPrice"}


@dataclass(frozen=True)
class GpuPrice:
    """One catalog GPU's price per GPU at a cloud, and the instance type it comes from."""

    gpu: str
    per_gpu: float  # on-demand $/h per GPU
    instance_type: str
    region: str
    spot_per_gpu: float | None = None


def price_source(name: str) -> Path:
    """A built-in snapshot by name (aws, lambda) or a CSV file."""
    builtin = PRICES_DIR / f"{name}.csv"
    if builtin.is_file():
        return builtin
    path = Path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRICES_DIR.glob("*.csv")))
        raise MelangeError(f"--prices: {name!r} is neither a built-in snapshot ({known}) nor a CSV file")
    return path


def read_prices(name: str) -> dict[str, GpuPrice]:
    """Catalog GPU -> its lowest on-demand price per GPU in the table `name` (module docstring)."""
    path = price_source(name)
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MelangeError(f"--prices: cannot read {path}: {exc}") from None
    out: dict[str, GpuPrice] = {}
    for k, row in enumerate(rows, start=2):
        r = _row(row, path, k)
        if r is None:
            continue
        accel, count, itype, region, price, spot = r
        for gpu, (want, kind) in ACCELERATORS.items():
            pcie = "pcie" in itype.lower()
            if accel != want or (kind == "pcie" and not pcie) or (kind == "sxm" and pcie):
                continue
            per = price / count
            if gpu not in out or per < out[gpu].per_gpu:
                out[gpu] = GpuPrice(gpu, per, itype, region, None if spot is None else spot / count)
    if not out:
        raise MelangeError(f"--prices: {path.name} has no instance of a catalog GPU "
                           f"({', '.join(sorted({a for a, _ in ACCELERATORS.values()}))})")
    return out


def _row(row: dict, path: Path, line: int):
    """(accelerator, count, instance type, region, price, spot) of one CSV row; None for a row
    without a GPU or a price (SkyPilot lists CPU types and unpriced regions)."""
    def get(key: str) -> str:
        value = row.get(key, row.get(_COLUMNS[key]))
        if value is None:
            raise MelangeError(f"--prices: {path.name} line {line} has no {key!r} (column {key!r} or "
                               f"{_COLUMNS[key]!r}, or a row cut short)")
        return value.strip()

    accel = get("accelerator")
    if accel not in {a for a, _ in ACCELERATORS.values()}:
        return None  # CPU types and accelerators no catalog GPU is (Azure's fractional A10s too)
    count, price, itype, region = get("count"), get("price"), get("instance_type"), get("region")
    spot_text = (row.get("spot_price", row.get(_COLUMNS["spot_price"])) or "").strip()  # optional
    if not count or not price:
        return None
    try:
        n, p = float(count), float(price)
    except ValueError:
        raise MelangeError(f"--prices: {path.name} line {line}: count and price must be numbers") from None
    if not (math.isfinite(n) and n >= 1 and n == int(n)) or not (math.isfinite(p) and p > 0):
        raise MelangeError(f"--prices: {path.name} line {line}: count must be a whole number >= 1 and price > 0")
    try:
        spot = float(spot_text) if spot_text else None
    except ValueError:
        spot = None
    if spot is not None and not (math.isfinite(spot) and spot > 0):
        spot = None  # spot prices are kept for later; a bad one is no price, not an error
    return accel, int(n), itype, region, p, spot


def apply_prices(sc, prices: dict[str, GpuPrice], cloud: str) -> list[str]:
    """Reprice `sc`'s catalog instance types in place (N GPUs × the cloud's per-GPU price) and drop
    those the cloud does not sell; returns one note per change. A type without a catalog GPU
    keeps its price."""
    notes, kept = [], []
    for g in sc.gpus:
        hw = sc.hardware.get(g.name)
        if hw is None:
            kept.append(g)
            notes.append(f"{g.name}: not a catalog GPU, keeps ${g.cost:g}/h")
        elif hw in prices:
            p = prices[hw]
            kept.append(replace(g, cost=round(g.gpus * p.per_gpu, 6)))
            notes.append(f"{g.name}: ${g.cost:g} -> ${kept[-1].cost:g}/h ({cloud} {p.instance_type}, "
                         f"${p.per_gpu:.3f} per GPU)")
        else:
            notes.append(f"{g.name}: {cloud} does not sell {hw}; left out")
    if not kept:
        raise MelangeError(f"--prices: {cloud} sells none of the scenario's GPUs")
    sc.gpus = kept
    sc.profiles = {g.name: sc.profiles[g.name] for g in kept if g.name in sc.profiles}
    return notes
