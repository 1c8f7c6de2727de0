"""Lemma 2, measured: how flat the fitted SE-RL critic is along the normal cones of the safe set
(Chapter 6, chapters/06_aliasing.py, "Lemma 2: the flat-lining critic" and "How flat is a fitted
SE critic?"; DESIGN.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from tutorial_rl.aliasing.experiment import AliasingResult, ExperimentConfig, run_experiment
from tutorial_rl.aliasing.scenarios import Scenario, as_float64
from tutorial_rl.sets.polygon import polygon_faces

__all__ = ["NormalDerivatives", "SweepRun", "normal_derivatives", "se_critic_sweep",
           "values_along_ray"]


@dataclass(frozen=True)
class NormalDerivatives:
    """Directional derivatives along the outward normal n at ũ = u + t n, per face [F, T].

    ``se``: fitted SE critic; ``raw``: the unsafe-action critic; ``raw_norm``: ‖∇Q_raw‖;
    ``exact``: central finite difference of the exact SE target V(Φ(ũ)) (Lemma 2: zero).
    """

    points: np.ndarray
    normals: np.ndarray
    distances: np.ndarray
    se: np.ndarray
    raw: np.ndarray
    raw_norm: np.ndarray
    exact: np.ndarray

    @property
    def ratio(self) -> float:
        """mean |∂_n Q_SE| / mean ‖∇Q_raw‖ over all measured points."""
        return float(np.abs(self.se).mean() / self.raw_norm.mean())



def normal_derivatives(result: AliasingResult,
                       distances: np.ndarray | None = None) -> NormalDerivatives:
    """Lemma 2 (DESIGN.md §3; chapter 6), measured: ∂_n of the fitted critics in the normal cone
    of face midpoints.

    Only faces whose ray u + t n stays inside the action box (where the critics were trained)
    for all ``distances`` are used; box faces never qualify.
    """
    distances = np.linspace(0.05, 0.35, 7) if distances is None else np.asarray(distances)
    pts, nrm = [], []
    for v, w, n in polygon_faces(result.scenario.A, result.scenario.b):
        mid = (v + w) / 2
        if np.all(np.abs(mid + distances.max() * n) <= 1) and np.all(np.abs(mid) < 1):
            pts.append(mid)
            nrm.append(n)
    points, normals = np.array(pts), np.array(nrm)
    rays = points[:, None, :] + distances[None, :, None] * normals[:, None, :]
    x = as_float64(rays).reshape(-1, 2).requires_grad_(True)
    n_t = as_float64(np.repeat(normals, len(distances), axis=0))
    grads = {k: torch.autograd.grad(result.critics[k](x).sum(), x)[0] for k in ("se", "raw")}
    shape = (len(points), len(distances))
    h = 1e-6
    xs = x.detach().numpy()
    n_np = n_t.numpy()
    val = result.scenario.value
    proj = result.scenario.project
    exact = (val(proj(xs + h * n_np)) - val(proj(xs - h * n_np))) / (2 * h)
    return NormalDerivatives(
        points, normals, distances, (grads["se"] * n_t).sum(-1).numpy().reshape(shape),
        (grads["raw"] * n_t).sum(-1).numpy().reshape(shape),
        grads["raw"].norm(dim=-1).numpy().reshape(shape), exact.reshape(shape))


def values_along_ray(result: AliasingResult, point: np.ndarray, normal: np.ndarray,
                     distances: np.ndarray) -> dict[str, np.ndarray]:
    """Values at ũ = point + t·normal: exact SE target, fitted SE critic, raw critic, raw truth.

    The data of chapter 6's Lemma-2 figure
    (:func:`tutorial_rl.aliasing_plots.plot_normal_derivatives`).
    """
    x = np.asarray(point)[None] + np.asarray(distances)[:, None] * np.asarray(normal)[None]
    s = result.scenario
    with torch.no_grad():
        fitted = {k: result.critics[k](as_float64(x)).squeeze(-1).numpy() for k in ("se", "raw")}
    return {"exact SE target V(Φ(ũ))": s.value(s.project(x)), "fitted SE critic": fitted["se"],
            "fitted unsafe-action critic": fitted["raw"], "true value V(ũ) of the raw action":
            s.value(x)}



@dataclass(frozen=True)
class SweepRun:
    """SE-RL with one critic fit (seed, epochs): where ũ ended, how flat the SE critic is."""

    seed: int
    epochs: int
    unsafe: np.ndarray  # ũ_T
    safe: np.ndarray  # Φ(ũ_T)
    inside: bool  # whether ũ_T itself is safe (the policy escaped the normal cone)
    value: float  # V(Φ(ũ_T))
    ratio: float  # NormalDerivatives.ratio of this fit's critics
    rmse: float  # fit error of the SE critic


def se_critic_sweep(scenario: Scenario, epochs: tuple[int, ...], seeds: tuple[int, ...],
                    config: ExperimentConfig | None = None) -> list[SweepRun]:
    """SE-RL re-run with critics fitted for each number of ``epochs`` and each seed (chapter 6):
    how the quality of the fitted SE critic decides whether Lemma 2 bites."""
    config = config or ExperimentConfig()
    out = []
    for n in epochs:
        for seed in seeds:
            r = run_experiment(scenario, replace(config, seed=seed, epochs=n),
                               settings=("none", "se"))
            tr = r.trajectories["se"]
            inside = bool((scenario.A @ tr.unsafe[-1] <= scenario.b + 1e-9).all())
            out.append(SweepRun(seed, n, tr.unsafe[-1], tr.safe[-1], inside, tr.final_value,
                                normal_derivatives(r).ratio, r.fit_rmse["se"]))
    return out
