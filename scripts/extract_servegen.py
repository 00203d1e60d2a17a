"""Aggregate Alibaba ServeGen's language/m-large clients into the built-in load
melange/scenarios/loads/servegen-m-large.json (data, deterministic).

    python scripts/extract_servegen.py --servegen PATH -o melange/scenarios/loads/servegen-m-large.json

PATH is a checkout of github.com/alibaba/ServeGen (Apache-2.0) or its bare git directory (read
with git, no work tree needed). Its `data/language/m-large/` holds, per client K:
- `chunk-K-trace.csv` (no header): window start (s), rate (req/s), cv of inter-arrival gaps, the
  fitted gap law (Weibull or Gamma; empty when the client sent nothing) and its two parameters;
  2016 windows of 10 minutes = 14 days, the same for every client.
- `chunk-K-dataset.json`: {timestamp: {"input_tokens": "{tokens: prob, ...}", "output_tokens":
  ...}} every 6 hours, each value a Python dict literal. As ServeGen's ClientPool reads them, a
  block with an empty table is skipped and a window uses the client's latest block at or before
  its start.

Per window: the total rate is the sum of the clients' rates; the cv is that of the superposition
of the clients' (independent, renewal) arrival processes; the length mix is the rate-weighted
mixture of each client's input table x output table (ServeGen gives them separately) binned on
the grid below, with the share outside the grid recorded and the rest renormalised.

A snapshot without the files of 4 MiB and more (some mirrors leave them out) lacks some clients'
dataset files: their rates and cv still count, and their windows' lengths are taken to follow
the other clients' mix; the file's attribution says how many requests that concerns.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melange.core import BucketGrid
from melange.load import MIN_CV, Load, write_load

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "melange" / "scenarios" / "loads" / "servegen-m-large.json"
MODEL_DIR = "data/language/m-large"
DEFAULT_COMMIT = "f891d11"  # the ServeGen commit the built-in file was made from
# The paper's grid: the default scenario's; coarser grids whose edges are among these (the 4k-context
# grid of the Llama-2-7B scenarios) are cut from it (`Load.on_grid`).
GRID = BucketGrid.paper()
# The time scale the aggregate's burstiness is measured at: about a loaded request's latency.
DISPERSION_SCALE_S = 60.0
STREAMS = 16  # the busiest clients replayed as streams of their own (the rest as one more)


@dataclass(frozen=True)
class Client:
    """One ServeGen client: its rate and cv per window and its length tables per block."""

    client_id: int
    rate: np.ndarray  # (T,) req/s, 0 where the client sent nothing
    cv: np.ndarray  # (T,)
    block_s: np.ndarray  # (B,) start of each length block (s)
    joint: np.ndarray | None  # (B, n_in, n_out) share of requests per bucket; None: no dataset file


def _git_dir(root: Path) -> Path | None:
    """The git directory of `root` (a bare one, or a checkout's .git), if it is one."""
    if (root / "HEAD").is_file() and (root / "objects").is_dir():
        return root
    return root / ".git" if (root / ".git").is_dir() else None


def _git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True,
                          check=True).stdout


def read_snapshot(root: Path, commit: str) -> tuple[dict[str, str | None], str]:
    """({file name: text, or None when the snapshot lacks it}, commit) of the model's folder:
    from the files on disk when there are, else from git's HEAD."""
    folder = root / MODEL_DIR
    git_dir = _git_dir(root)
    if git_dir is not None:
        commit = _git(git_dir, "rev-parse", "--short=7", "HEAD").decode().strip()
    if folder.is_dir():
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}, commit
    if git_dir is None:
        sys.exit(f"--servegen: {root} has no {MODEL_DIR}/ and is not a git directory")
    listing = _git(git_dir, "ls-tree", "-r", "-z", "HEAD", "--", MODEL_DIR)
    entries = [e.split(b"\t", 1) for e in listing.split(b"\0") if e]
    oids = [head.split()[2].decode() for head, _ in entries]
    names = [Path(path.decode()).name for _, path in entries]
    out = _git(git_dir, "cat-file", "--batch", stdin="".join(f"{o}\n" for o in oids).encode())
    files, at = {}, 0
    for name in names:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        if header[-1] == b"missing":  # listed in the tree, but the blob is not in the snapshot
            files[name], at = None, end + 1
            continue
        size = int(header[2])
        files[name] = out[end + 1:end + 1 + size].decode("utf-8")
        at = end + 1 + size + 1
    return files, commit


def parse_trace(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window starts, rates, cvs) of a client's trace CSV; rate 0 where no gap law was fitted
    (ServeGen's ClientPool reads such a window as 'no traffic')."""
    starts, rates, cvs = [], [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        start, rate, cv, law, _, _ = line.strip().split(",")
        active = law != ""
        starts.append(int(start))
        rates.append(float(rate) if active else 0.0)
        cvs.append(float(cv) if active else 0.0)
    return np.array(starts, dtype=np.int64), np.array(rates), np.array(cvs)


def binned(table: dict, edges: tuple[int, ...]) -> np.ndarray:
    """Share of a {tokens: probability} table in each [edges[k], edges[k+1]) bucket; what falls
    outside the edges is left out (the shares then sum to less than 1)."""
    tokens = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
    probs = np.fromiter(table.values(), dtype=float, count=len(table))
    k = np.searchsorted(edges, tokens, side="right") - 1
    inside = (k >= 0) & (k < len(edges) - 1)
    return np.bincount(k[inside], probs[inside], minlength=len(edges) - 1) / probs.sum()


def parse_dataset(text: str, grid: BucketGrid) -> tuple[np.ndarray, np.ndarray]:
    """(block starts, (B, n_in, n_out) joint shares) of a client's dataset JSON."""
    starts, joints = [], []
    for stamp, fields in sorted(json.loads(text).items(), key=lambda kv: int(kv[0])):
        tables = {key: ast.literal_eval(fields[key]) for key in ("input_tokens", "output_tokens")}
        if any(len(t) == 0 for t in tables.values()):
            continue  # as ServeGen's ClientPool: an empty table drops the block, the previous one holds
        if not all(isinstance(k, int) for t in tables.values() for k in t):
            raise ValueError(f"dataset block {stamp}: token counts must be integers")
        # ServeGen publishes the input and output tables separately: the joint is their product.
        joints.append(np.outer(binned(tables["input_tokens"], grid.in_edges),
                               binned(tables["output_tokens"], grid.out_edges)))
        starts.append(int(stamp))
    return np.array(starts, dtype=np.int64), np.array(joints).reshape(len(joints), *grid.shape)


def read_clients(files: dict[str, str | None], grid: BucketGrid) -> tuple[np.ndarray, list[Client]]:
    """(window starts, clients sorted by id) from the model folder's files."""
    ids = sorted(int(n.split("-")[1]) for n in files if n.startswith("chunk-") and n.endswith("-trace.csv"))
    if not ids:
        sys.exit(f"--servegen: no chunk-K-trace.csv in {MODEL_DIR}/")
    starts, clients = None, []
    for cid in ids:
        text = files[f"chunk-{cid}-trace.csv"]
        if text is None:
            sys.exit(f"--servegen: chunk-{cid}-trace.csv is missing from the snapshot")
        ts, rate, cv = parse_trace(text)
        if starts is None:
            starts = ts
        elif not np.array_equal(ts, starts):
            sys.exit(f"--servegen: chunk-{cid}-trace.csv has other window starts than chunk-{ids[0]}")
        dataset = files.get(f"chunk-{cid}-dataset.json")
        block_s, joint = parse_dataset(dataset, grid) if dataset is not None else (np.zeros(0, np.int64), None)
        clients.append(Client(cid, rate, cv, block_s, joint))
    steps = np.diff(starts)
    if starts[0] != 0 or len(starts) < 2 or np.any(steps != steps[0]):
        sys.exit("--servegen: window starts must be evenly spaced from 0")
    return starts, clients


def capped_cv2(client: Client) -> np.ndarray:
    """A client's cv^2 per window, capped at its dispersion over DISPERSION_SCALE_S (see `aggregate`)."""
    return np.minimum(client.cv**2, 1.0 + client.rate * DISPERSION_SCALE_S)


def streams(clients: list[Client], rate: np.ndarray) -> np.ndarray:
    """(T, STREAMS + 1, 2) (share of the window's rate, cv): the STREAMS busiest clients over the
    whole data each as its own stream, the rest merged into one (cv^2 as in `aggregate`). A burst of
    one big client then clumps that client's requests, not everyone's, as in the real superposition."""
    order = sorted(clients, key=lambda c: -float(c.rate.sum()))
    big, rest = order[:STREAMS], order[STREAMS:]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = [np.stack([np.where(rate > 0, c.rate / rate, 0.0), np.where(c.rate > 0, np.sqrt(capped_cv2(c)), 1.0)],
                        axis=-1) for c in big]
        rest_rate = sum((c.rate for c in rest), np.zeros_like(rate))
        rest_cv2 = sum((c.rate * capped_cv2(c) for c in rest), np.zeros_like(rate))
        out.append(np.stack([np.where(rate > 0, rest_rate / rate, 0.0),
                             np.where(rest_rate > 0, np.sqrt(rest_cv2 / np.where(rest_rate > 0, rest_rate, 1.0)), 1.0)],
                            axis=-1))
    return np.maximum(np.stack(out, axis=1), 0.0)


def aggregate(starts: np.ndarray, clients: list[Client], grid: BucketGrid) -> tuple[np.ndarray, ...]:
    """(rate, cv, distribution, outside_grid, known) per window: the sum of the clients' traffic;
    `known` is the rate of the clients whose lengths are known in that window."""
    windows = len(starts)
    rate, weighted_cv2 = np.zeros(windows), np.zeros(windows)
    known, mix = np.zeros(windows), np.zeros((windows, *grid.shape))
    for client in clients:
        rate += client.rate
        weighted_cv2 += client.rate * capped_cv2(client)
        if client.joint is None or len(client.block_s) == 0:
            continue
        block = np.searchsorted(client.block_s, starts, side="right") - 1  # latest block at or before
        has = block >= 0
        weight = np.where(has, client.rate, 0.0)
        known += weight
        mix += weight[:, None, None] * client.joint[np.maximum(block, 0)]
    # Superposing independent renewal processes adds their counts' variances and means, so the
    # aggregate's index of dispersion (= cv^2 of a renewal process, asymptotically) is the
    # rate-weighted mean of the clients' cv^2. But a client's cv^2 is its dispersion only over
    # spans far longer than cv^2 gaps: over DISPERSION_SCALE_S it is at most 1 + rate x span (all
    # of the span's requests at once), and a client with cv 100 at 0.15 req/s would otherwise make
    # the whole fleet's traffic arrive in a few clumps per window. Gamma gaps with the resulting cv
    # have the aggregate's dispersion at that scale. An idle window has no gaps: cv 1 (Poisson).
    busy = rate > 0
    cv = np.ones(windows)
    cv[busy] = np.maximum(np.sqrt(weighted_cv2[busy] / rate[busy]), MIN_CV)
    inside = mix.sum(axis=(1, 2))
    ok = inside > 0
    outside = np.zeros(windows)
    outside[ok] = 1.0 - inside[ok] / known[ok]
    distribution = np.zeros_like(mix)
    distribution[ok] = mix[ok] / inside[ok, None, None]
    # A busy window whose clients' lengths are all unknown takes the whole data's mix.
    lacking = busy & ~ok
    if lacking.any():
        total = mix.sum(axis=0)
        if total.sum() <= 0:
            sys.exit("--servegen: no client has length tables inside the grid")
        distribution[lacking] = total / total.sum()
        outside[lacking] = 1.0 - total.sum() / known.sum()
    return rate, cv, distribution, np.clip(outside, 0.0, 1.0), known


def attribution(commit: str, clients: list[Client], starts: np.ndarray, rate: np.ndarray,
                known: np.ndarray) -> str:
    """The file's attribution: source, licence, paper, how it was aggregated, what is missing."""
    window_s = int(starts[1] - starts[0])
    days = len(starts) * window_s / 86400
    lines = [f"Alibaba ServeGen, language/m-large (Apache-2.0): https://github.com/alibaba/ServeGen "
             f"commit {commit}; "
             "Xiang et al., ServeGen: Workload Characterization and Generation of Large Language Model Serving "
             "in Production, arXiv 2505.09999.",
             f"Sum of {len(clients)} clients per {window_s / 60:g}-minute window over {days:g} days; cv of the "
             "superposition (cv^2 = sum rate_i cv_i^2 / sum rate_i); lengths: each client's input x output "
             "table (its latest block), rate-weighted, on this grid. Made by scripts/extract_servegen.py."]
    lacking = [c.client_id for c in clients if c.joint is None]
    if lacking:
        share = sum(c.rate.sum() for c in clients if c.joint is None) / rate.sum()
        plural = "s" if len(lacking) != 1 else ""
        lines.append(f"The snapshot used lacked the length tables of {len(lacking)} client{plural} "
                     f"({share:.1%} of requests; ids {', '.join(map(str, lacking))}): their rates and cv "
                     "count, their lengths are taken to follow the other clients' mix in each window.")
    return "\n".join(lines)


def build(root: Path, commit: str = DEFAULT_COMMIT, grid: BucketGrid = GRID,
          name: str = "servegen-m-large") -> tuple[Load, dict]:
    """(the load, facts to print) from a ServeGen checkout or git directory."""
    files, commit = read_snapshot(root, commit)
    starts, clients = read_clients(files, grid)
    rate, cv, distribution, outside, known = aggregate(starts, clients, grid)
    load = Load(name, grid, float(starts[1] - starts[0]), rate, cv, distribution,
                attribution(commit, clients, starts, rate, known), outside, streams(clients, rate))
    busy = rate > 0
    facts = {"clients": len(clients), "lacking_lengths": sum(c.joint is None for c in clients),
             "known_share": float(known.sum() / rate.sum()),
             "min_known_share": float(np.min(known[busy] / rate[busy])),
             "outside_grid": float((outside * known).sum() / known.sum()),
             "mean_cv": float(cv.mean()), "rate_weighted_cv": float((cv * rate).sum() / rate.sum())}
    return load, facts


def main(argv: list[str] | None = None) -> None:
    """Command line: read ServeGen, write the load, print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servegen", required=True, type=Path, help="ServeGen checkout or git directory")
    parser.add_argument("-o", "--output", type=Path, default=OUT, help=f"load JSON to write (default {OUT})")
    parser.add_argument("--commit", default=DEFAULT_COMMIT, help="commit to name when PATH is not a git directory")
    args = parser.parse_args(argv)
    load, facts = build(args.servegen, args.commit)
    write_load(args.output, load)
    print(f"wrote {args.output}: {load.windows} windows of {load.window_s:g}s, mean {load.mean_rate:.2f} req/s, "
          f"peak {load.peak_rate:.2f} req/s; cv mean {facts['mean_cv']:.3f} (rate-weighted "
          f"{facts['rate_weighted_cv']:.3f}); outside the grid {facts['outside_grid']:.2%}; lengths known for "
          f"{facts['known_share']:.1%} of requests (min {facts['min_known_share']:.1%} of a window; "
          f"{facts['lacking_lengths']} of {facts['clients']} clients lack length tables)")


if __name__ == "__main__":
    main()
