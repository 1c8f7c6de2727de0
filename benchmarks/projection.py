"""Forward + backward wall time of the exact projection against the enumeration and QP layers.

Run ``.venv/bin/python benchmarks/projection.py`` (``--quick`` for a smoke run). For each action
dimension m, row count k and batch B, every method sees the same random polytopes (one per batch
element, float64) and proposals, and the methods are timed interleaved, repeat by repeat, so that
load on a shared machine hits them alike; the table reports medians of forward + backward
(gradient with respect to the proposals) in milliseconds of process (CPU) time by default, which
a loaded machine inflates far less than wall-clock time (``--clock wall`` for the latter). Methods:

- ``exact``: ``project_polytope(method="exact")``, the package's path (the route ``core.route``
  picks: the edge search, the enumeration or the dual active-set method; then the verified polish
  and the face rule);
- ``enum``: the candidate enumeration alone, run as the old default ran it (input checks, the
  chosen set, its KKT solve recomputed with autograd-tracked ops), where its table fits;
- ``cvxpylayers``: the paper's setup (``method="cvxpylayers"``); skipped at B = 4096, where one
  run takes minutes (said in the output);
- ``proxsuite``: proxsuite's QPLayer (``pip install -e '.[bench]'``; skipped with a message if it
  is not installed). It is a benchmark-only dependency, never imported by the package.

``--routes`` times instead each route of the exact path (the planar edge search, the enumeration,
the dual method; forced through ``core.FORCE``) side by side where ``core.route`` has to choose,
and prints whether the rule picks the fastest (within 10 %) in each case: the measurement behind
the crossovers in ``core.route``'s docstring.

Targets (issue 16): the exact path never slower than before (the enumeration) on the course's
sets (m <= 2); at m = 6, k = 18, B = 256 under 10 ms and faster than every library measured; at
least 100x cvxpylayers at B = 256 everywhere. DESIGN.md §6 says why the ratio matters.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from tutorial_rl._validation import check_inputs
from tutorial_rl.projection import core, enumeration, project_polytope

Method = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
GRID = {1: (2, 5, 10), 2: (3, 6, 14), 4: (5, 12, 22), 6: (7, 18, 30), 12: (13, 30, 54)}
# --routes: where the dispatch rule (core.route) has to choose, i.e. where the enumeration fits
# and might be faster: small k for each m, and the course's 2-D sets.
ROUTE_GRID = {2: (2, 3, 4, 6, 10, 15), 3: (4, 6, 9), 4: (5, 7, 12), 6: (7, 9), 8: (9, 10),
              12: (13,)}
ROUTE_BATCHES = (1, 16, 256, 4096)
BATCHES = (1, 256, 4096)
CVX_MAX_BATCH = 256
TARGET_CVX = 100.0
TARGET_MS = 10.0
SLOW_SECONDS = 30.0  # a method whose repeats of one cell would take longer gets 3 of them
PROX_OFF = 1e-6  # proxsuite's elements further than this from the exact answer are counted


def random_polytopes(batch: int, k: int, m: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Bounded-or-not random polytopes around a centre (unit rows at 0.2-1.5 from it), proposals
    at 2.5 standard deviations (most are projected), and an output-gradient weight."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(batch, k, m, dtype=torch.float64, generator=g)
    A = A / A.norm(dim=-1, keepdim=True)
    centre = 2 * torch.rand(batch, m, dtype=torch.float64, generator=g) - 1
    b = (A @ centre[..., None]).squeeze(-1) + 0.2 + 1.3 * torch.rand(batch, k, dtype=torch.float64,
                                                                        generator=g)
    u = 2.5 * torch.randn(batch, m, dtype=torch.float64, generator=g)
    w = torch.randn(batch, m, dtype=torch.float64, generator=g)
    return u, A, b, w


def enumeration_projection(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The enumeration alone, as the old default ran it: input checks, the chosen set, recomputed
    with autograd-tracked ops."""
    u, A, b, _ = check_inputs(u, A, b)
    rows = enumeration.select(u.detach(), A.detach(), b.detach()).rows
    k = A.shape[-2]
    mask = rows < k
    idx = rows.clamp_max(k - 1)
    at = torch.arange(len(u))[:, None]
    As = A[at if A.shape[0] > 1 else 0, idx] * mask[..., None]
    bs = b[at if b.shape[0] > 1 else 0, idx] * mask
    G = As @ As.mT + torch.diag_embed((~mask).to(A.dtype))
    lam = torch.linalg.solve(G, (As @ u[..., None]).squeeze(-1) - bs)
    return u - (As.mT @ lam[..., None]).squeeze(-1)


def proxsuite_method() -> Method | None:
    try:
        from proxsuite.torch.qplayer import QPFunction
    except ImportError:
        return None

    def solve(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        B, m = u.shape
        Q = torch.eye(m, dtype=u.dtype).expand(B, m, m)
        empty = torch.empty(0, dtype=u.dtype)
        lower = torch.full_like(b, -1e20)
        x, _, _ = QPFunction(eps=1e-9)(Q, -u, empty, empty, A, lower, b)
        return x

    return solve


def methods(proxsuite: Method | None) -> dict[str, Method]:
    out: dict[str, Method] = {
        "exact": lambda u, A, b: project_polytope(u, A, b),
        "enum": enumeration_projection,
        "cvxpylayers": lambda u, A, b: project_polytope(u, A, b, method="cvxpylayers"),
    }
    if proxsuite is not None:
        out["proxsuite"] = proxsuite
    return out


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time


def forward_backward(f: Method, u: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                     w: torch.Tensor, inner: int) -> tuple[float, torch.Tensor]:
    """Mean seconds of ``inner`` forward + backward passes, and the last output."""
    start = clock()
    for _ in range(inner):
        x = u.detach().clone().requires_grad_(True)
        out = f(x, A, b)
        (out * w).sum().backward()
    return (clock() - start) / inner, out.detach()


def forced(route: str) -> Method:
    """The exact path with its active-set method forced to ``route`` (core.FORCE)."""

    def f(u: torch.Tensor, A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        core.FORCE = route
        try:
            return project_polytope(u, A, b)
        finally:
            core.FORCE = None

    return f


def route_table(repeats: int, budget: float, seed: int, grid: dict[int, tuple[int, ...]],
                batches: list[int]) -> list[dict]:
    """Each applicable route of the exact path, timed side by side; whether core.route picks the
    fastest (or one within 10 % of it: closer than the noise of a shared machine)."""
    print("routes of the exact path (forward + backward, ms); rule: core.route's choice")
    print(f"{'m':>3}{'k':>4}{'B':>6}" + "".join(f"{n:>13}" for n in core.ROUTES)
          + f"{'rule':>13}{'fastest':>13}{'rule/fastest':>14}")
    rows = []
    for m, ks in grid.items():
        for k in ks:
            for batch in batches:
                names = [r for r in core.ROUTES if r == "dual" or (r == "planar" and m == 2)
                         or (r == "enumeration" and runs("enum", m, k, batch))]
                fns = {r: forced(r) for r in names}
                t = measure(m, k, batch, repeats, seed + 1000 * m + k, fns, budget)
                rule = core.route(m, k, batch)
                fastest = min(names, key=lambda r: t[f"{r}_ms"])
                ratio = t[f"{rule}_ms"] / t[f"{fastest}_ms"]
                cells = "".join(f"{t[f'{r}_ms']:>13.3f}" if f"{r}_ms" in t else f"{'-':>13}"
                                for r in core.ROUTES)
                print(f"{m:>3}{k:>4}{batch:>6}{cells}{rule:>13}{fastest:>13}{ratio:>13.2f}x"
                      f"{'' if ratio <= 1.1 else '  <- rule not fastest'}", flush=True)
                rows.append({"m": m, "k": k, "batch": batch, "rule": rule, "ratio": ratio})
    bad = [r for r in rows if r["ratio"] > 1.1]
    print(f"the rule picks the fastest route (within 10 %) in {len(rows) - len(bad)} of "
          f"{len(rows)} cases" + (f"; worst {max(r['ratio'] for r in bad):.2f}x" if bad else ""))
    return rows


def runs(name: str, m: int, k: int, batch: int) -> bool:
    if name == "enum":
        return enumeration.fits(k, m) and enumeration.candidate_count(k, m) * batch <= 2_000_000
    if name == "cvxpylayers":
        return batch <= CVX_MAX_BATCH
    return True


def measure(m: int, k: int, batch: int, repeats: int, seed: int, fns: dict[str, Method],
            budget: float) -> dict[str, float]:
    u, A, b, w = random_polytopes(batch, k, m, seed)
    inner: dict[str, int] = {}
    outs: dict[str, torch.Tensor] = {}
    reps: dict[str, int] = {}
    for name, f in fns.items():  # warm-up (caches, layers) and inner-loop sizing
        if runs(name, m, k, batch):
            seconds, outs[name] = forward_backward(f, u, A, b, w, 1)
            inner[name] = max(1, min(100, round(budget / max(seconds, 1e-6))))
            # every repeat where that takes under SLOW_SECONDS (a median of 2 is no median),
            # else 3: cvxpylayers at B = 256 (about 1 s a call) gets them all
            slow = name not in ("exact", *core.ROUTES) and seconds * repeats > SLOW_SECONDS
            reps[name] = min(repeats, 3) if slow else repeats
    times: dict[str, list[float]] = {name: [] for name in inner}
    for r in range(repeats):
        for name in (list(inner) if r % 2 == 0 else list(inner)[::-1]):
            if r < reps[name]:
                times[name].append(forward_backward(fns[name], u, A, b, w, inner[name])[0])
    row = {f"{name}_ms": 1e3 * statistics.median(t) for name, t in times.items()}
    ref = outs["exact"] if "exact" in outs else next(iter(outs.values()))
    row["diff"] = max(float((o - ref).abs().max()) for n, o in outs.items() if n != "proxsuite")
    if "proxsuite" in outs:  # reported apart: its first-order solves are not always accurate
        off = (outs["proxsuite"] - ref).abs().amax(-1)
        row["prox_diff"] = float(off.max())
        row["prox_off"], row["elements"] = int((off > PROX_OFF).sum()), batch
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="m = 2, k = 6, batch 1 (smoke test)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--budget", type=float, default=0.02,
                        help="seconds per timed block (inner loop sized to it)")
    parser.add_argument("--dims", default=",".join(map(str, GRID)), help="action dimensions m")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (0 keeps torch's default)")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="cpu",
                        help="cpu: process time (robust on a shared machine); wall: elapsed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--routes", action="store_true",
                        help="time each route of the exact path where core.route chooses")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.routes:
        dims = [int(d) for d in args.dims.split(",")] if args.dims != ",".join(map(str, GRID)) \
            else list(ROUTE_GRID)
        batches = ([int(x) for x in args.batches.split(",")]
                   if args.batches != ",".join(map(str, BATCHES)) else list(ROUTE_BATCHES))
        return route_table(args.repeats, args.budget, args.seed,
                           {m: ROUTE_GRID[m] for m in dims}, batches)
    prox = proxsuite_method()
    fns = methods(prox)
    if args.quick:
        grid, batches, repeats = {2: (6,)}, [1], 2
    else:
        dims = [int(d) for d in args.dims.split(",")]
        grid = {m: GRID[m] for m in dims}
        batches, repeats = [int(x) for x in args.batches.split(",")], args.repeats
    print(f"forward + backward, float64, one polytope per element; torch threads: "
          f"{torch.get_num_threads()}; median of {repeats} interleaved repeats, ms of "
          f"{'process (CPU)' if args.clock == 'cpu' else 'wall-clock'} time")
    if prox is None:
        print("proxsuite not installed (pip install -e '.[bench]'): its column is skipped")
    print(f"cvxpylayers is skipped above B = {CVX_MAX_BATCH} (minutes per run); '-': not run "
          f"(enumeration table too large); max |diff|: exact vs enumeration and cvxpylayers; "
          f"last column: exact vs proxsuite")
    names = list(fns)
    print(f"{'m':>3}{'k':>4}{'B':>6}" + "".join(f"{n:>13}" for n in names)
          + f"{'cvx/exact':>11}{'best other/exact':>18}{'max |diff|':>12}{'proxsuite':>11}")
    rows = []
    for m, ks in grid.items():
        for k in ks:
            for batch in batches:
                r = measure(m, k, batch, repeats, args.seed + 1000 * m + k, fns, args.budget)
                r.update(m=m, k=k, batch=batch)
                rows.append(r)
                others = [r[f"{n}_ms"] for n in names if n != "exact" and f"{n}_ms" in r]
                cvx = r.get("cvxpylayers_ms", math.nan) / r["exact_ms"]
                r["cvx_ratio"], r["best_other_ratio"] = cvx, min(others) / r["exact_ms"]
                cells = "".join(f"{r[f'{n}_ms']:>13.3f}" if f"{n}_ms" in r else f"{'-':>13}"
                                for n in names)
                prox = f"{r['prox_diff']:>11.1e}" if "prox_diff" in r else f"{'-':>11}"
                ratio = f"{'-':>11}" if math.isnan(cvx) else f"{cvx:>10.0f}x"
                print(f"{m:>3}{k:>4}{batch:>6}{cells}{ratio}{r['best_other_ratio']:>17.2f}x"
                      f"{r['diff']:>12.1e}{prox}", flush=True)
    _targets(rows)
    return rows


def _targets(rows: list[dict]) -> None:
    at256 = [r for r in rows if r["batch"] == 256 and not math.isnan(r["cvx_ratio"])]
    if at256:
        worst = min(at256, key=lambda r: r["cvx_ratio"])
        met = "met" if worst["cvx_ratio"] >= TARGET_CVX else "NOT met"
        print(f"target >= {TARGET_CVX:.0f}x cvxpylayers at B = 256 everywhere: {met} (lowest "
              f"{worst['cvx_ratio']:.0f}x at m = {worst['m']}, k = {worst['k']})")
    key = [r for r in rows if (r["m"], r["k"], r["batch"]) == (6, 18, 256)]
    if key:
        r = key[0]
        ok = r["exact_ms"] < TARGET_MS and r["best_other_ratio"] > 1
        print(f"target m = 6, k = 18, B = 256 under {TARGET_MS:.0f} ms and faster than every "
              f"library: {'met' if ok else 'NOT met'} ({r['exact_ms']:.2f} ms, next best "
              f"{r['best_other_ratio']:.1f}x slower)")
    course = [r for r in rows if r["m"] <= 2 and "enum_ms" in r]
    if course:
        worst = max(course, key=lambda r: r["exact_ms"] / r["enum_ms"])
        print(f"m <= 2, exact vs the enumeration alone (the old default): at most "
              f"{worst['exact_ms'] / worst['enum_ms']:.2f}x its time (m = {worst['m']}, "
              f"k = {worst['k']}, B = {worst['batch']}); m = 1 uses a clamp")
    print(f"exact, enumeration and cvxpylayers agree to {max(r['diff'] for r in rows):.1e} "
          "(max |diff|)")
    prox = [r for r in rows if "prox_diff" in r]
    if prox:
        off, total = sum(r["prox_off"] for r in prox), sum(r["elements"] for r in prox)
        print(f"proxsuite's outputs differ by up to {max(r['prox_diff'] for r in prox):.1e}; "
              f"{off} of {total} elements by more than {PROX_OFF:g} (its first-order solver "
              "stops short on them at eps = 1e-9)")


if __name__ == "__main__":
    main()
