"""Forward + backward wall time of the exact projection against the cvxpylayers reference.

Run ``.venv/bin/python benchmarks/projection.py`` (``--quick`` for a smoke run). Both methods see
the same random polygons (one per batch element, 2-D actions, float64) and are timed interleaved,
repeat by repeat, so that load on a shared machine hits both alike; the table reports medians.
See DESIGN.md §6 for why the ratio matters (SP-RL differentiates through every projection).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from tutorial_rl.projection import project_polytope

TARGET = 100.0  # the exact method should beat cvxpylayers by this factor at batch 256


def random_polygons(batch: int, faces: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounded polygons: jittered normals less than π apart, each face 0.2-1.5 from a centre."""
    g = np.random.default_rng(seed)
    jitter = g.uniform(0, 0.45, (batch, faces)) + np.arange(faces)
    theta = g.uniform(0, 2 * math.pi, (batch, 1)) + 2 * math.pi * jitter / faces
    A = np.stack([np.cos(theta), np.sin(theta)], -1)
    centre = g.uniform(-1, 1, (batch, 2))
    b = np.einsum("bkm,bm->bk", A, centre) + g.uniform(0.2, 1.5, (batch, faces))
    return torch.from_numpy(A), torch.from_numpy(b)


def forward_backward(
    method: str, u: torch.Tensor, A: torch.Tensor, b: torch.Tensor, w: torch.Tensor, inner: int
) -> tuple[float, torch.Tensor]:
    """Mean seconds of ``inner`` forward + backward passes, and the last output."""
    start = time.perf_counter()
    for _ in range(inner):
        x = u.detach().clone().requires_grad_(True)
        out = project_polytope(x, A, b, method=method)
        (out * w).sum().backward()
    return (time.perf_counter() - start) / inner, out.detach()


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, two repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per batch")
    parser.add_argument("--faces", type=int, default=6, help="faces per polygon")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (0 keeps torch's default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    batches, repeats = ([1], 2) if args.quick else ([1, 32, 256], args.repeats)
    print(
        f"2-D actions, {args.faces}-face polygons (one per element), float64, forward+backward; "
        f"torch threads: {torch.get_num_threads()}; median of {repeats} interleaved repeats"
    )
    print(f"{'batch':>6} {'exact ms':>10} {'cvxpylayers ms':>15} {'ratio':>8} {'max |diff|':>11}")
    rows = []
    for batch in batches:
        A, b = random_polygons(batch, args.faces, args.seed + batch)
        g = torch.Generator().manual_seed(args.seed)
        u = 2.5 * torch.randn(batch, 2, dtype=torch.float64, generator=g)
        w = torch.randn(batch, 2, dtype=torch.float64, generator=g)
        # Warm-up builds the cached layer / index tables and sizes the inner loops to ~20 ms.
        inner = {}
        for method in ("exact", "cvxpylayers"):
            seconds, _ = forward_backward(method, u, A, b, w, 1)
            inner[method] = 1 if args.quick else max(1, min(200, round(0.02 / seconds)))
        times: dict[str, list[float]] = {"exact": [], "cvxpylayers": []}
        for _ in range(repeats):
            for method in times:
                seconds, out = forward_backward(method, u, A, b, w, inner[method])
                times[method].append(seconds)
                if method == "exact":
                    exact_out = out
                else:
                    diff = float((out - exact_out).abs().max())
        t_exact, t_ref = (statistics.median(times[m]) for m in ("exact", "cvxpylayers"))
        rows.append(
            {
                "batch": batch,
                "exact_s": t_exact,
                "cvxpylayers_s": t_ref,
                "ratio": t_ref / t_exact,
                "max_abs_diff": diff,
            }
        )
        print(
            f"{batch:>6} {1e3 * t_exact:>10.3f} {1e3 * t_ref:>15.3f} {t_ref / t_exact:>7.0f}x "
            f"{diff:>11.1e}"
        )
    last = rows[-1]
    met = "met" if last["ratio"] >= TARGET else "NOT met"
    print(
        f"target: exact >= {TARGET:.0f}x faster than cvxpylayers at batch 256: {met} "
        f"({last['ratio']:.0f}x at batch {last['batch']}); outputs agree to "
        f"{max(r['max_abs_diff'] for r in rows):.1e} (target 1e-6)"
    )
    return rows


if __name__ == "__main__":
    main()
