"""Numerical verification of robust invariance (Chapter 3's invariance figure).

:func:`verify_invariance` samples states in an RCI set (its vertices included), computes the
fast-path safe action set ``U_s(x)`` at each, picks several safe actions and checks that the
next state stays in ``X_rci`` under *every* vertex of the disturbance set ``W``. For the
pendulum it also steps the *nonlinear* simulator with every vertex of the noise box, which
checks the linearization error bound end to end. Everything is vectorized (10^5 states take
seconds); the checks use the facets of ``X_rci`` directly, not the merged action rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tutorial_rl.projection import project_polytope
from tutorial_rl.sets.polygon import polygon_vertices
from tutorial_rl.sets.safe_actions import LinearSafeActionSet
from tutorial_rl.sets.zonotope import Zonotope

__all__ = ["VerificationReport", "sample_states", "verify_invariance", "zonotope_corners"]

NonlinearStep = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class VerificationReport:
    """Counts from :func:`verify_invariance` (all failure counts should be zero).

    :param n_states: states checked (``n_vertex_states`` of them vertices of ``X_rci``).
    :param n_empty: states in ``X_rci`` whose ``U_s(x)`` came out empty.
    :param n_actions: (state, safe action) pairs checked.
    :param n_transitions: next states checked with the linear model (pairs × vertices of W).
    :param n_failures: states at which some tested action sends some vertex of ``W`` outside
        ``X_rci``.
    :param n_nonlinear_transitions: next states of the nonlinear simulator checked.
    :param n_nonlinear_failures: of those, outside ``X_rci``.
    :param max_violation: largest ``H z − h`` over all checked next states (``<= 0``: inside).
    :param states: the sampled states; :param failed: per state, whether any check failed.
    """

    system: str
    n_states: int
    n_vertex_states: int
    n_empty: int
    n_actions: int
    n_transitions: int
    n_failures: int
    n_nonlinear_transitions: int
    n_nonlinear_failures: int
    max_violation: float
    states: np.ndarray = field(repr=False)
    failed: np.ndarray = field(repr=False)

    @property
    def ok(self) -> bool:
        """No empty safe set and no next state outside the RCI set."""
        return self.n_empty == 0 and self.n_failures == 0 and self.n_nonlinear_failures == 0


def zonotope_corners(Z: Zonotope) -> np.ndarray:
    """All ``2^p`` points ``c + G σ``, ``σ ∈ {±1}^p`` (a superset of the vertices; small p)."""
    G = Z.compact().generators
    if G.shape[1] > 16:
        raise ValueError(f"{G.shape[1]} generators: too many corners to enumerate")
    signs = np.array(list(itertools.product([-1.0, 1.0], repeat=G.shape[1])))
    return Z.center + signs @ G.T


def sample_states(X: Zonotope, n: int, rng: np.random.Generator,
                  n_extreme: int = 5000) -> tuple[np.ndarray, int]:
    """``n`` states in ``X``: its vertices first, then uniform-β samples and random corners.

    2-D sets contribute all their vertices; higher-dimensional ones the maximisers of
    ``n_extreme`` random linear functions (vertices of ``X``). A quarter of the rest are
    corners ``c + G σ`` with random signs (deep in the "β-corners", often near the boundary).
    :returns: the states and how many of them are vertices.
    """
    if X.dim == 2:
        V = X.vertices_2d()
    else:
        V = np.unique(X.extreme_point(rng.standard_normal((n_extreme, X.dim))), axis=0)
    V = V[:n]
    rest = n - len(V)
    n_corner = rest // 4
    signs = rng.choice([-1.0, 1.0], size=(n_corner, X.n_generators))
    return np.vstack([V, X.center + signs @ X.generators.T, X.sample(rest - n_corner, rng)]), len(V)


def _safe_actions(S: LinearSafeActionSet, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Several safe actions per state, ``(N, a, m)``: extreme points, projections, interior."""
    lo, hi = S.input_box.lower, S.input_box.upper
    N = len(b)
    if S.n_inputs == 1:
        up = S.action_rows[:, 0] > 0
        upper = (b[:, up] / S.action_rows[up, 0]).min(axis=1)
        lower = (b[:, ~up] / S.action_rows[~up, 0]).max(axis=1)
        rand = rng.uniform(lo, hi, size=(N, 1))[:, 0]
        acts = [lower, upper, (lower + upper) / 2, np.clip(0.0, lower, upper),
                np.clip(rand, lower, upper)]
        return np.stack(acts, axis=1)[..., None]
    if S.n_inputs != 2:
        raise ValueError("verify_invariance picks actions for 1 or 2 inputs")
    pts, valid = polygon_vertices(S.action_rows, b, S.tol)
    # One vertex per state, chosen at random among the valid ones (all types get covered).
    score = np.where(valid, rng.random(valid.shape), -1.0)
    vertex = pts[np.arange(N), score.argmax(axis=1)]
    centroid = (pts * valid[..., None]).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)[:, None]
    center = np.broadcast_to((lo + hi) / 2, (N, 2))
    rand = rng.uniform(lo, hi, size=(N, 2))
    # action_rows and center are read-only views; torch.tensor copies them to writable memory.
    rows, offsets = torch.tensor(S.action_rows), torch.as_tensor(b)
    acts = [vertex, centroid,
            project_polytope(torch.tensor(center), rows, offsets).numpy(),
            project_polytope(torch.as_tensor(rand), rows, offsets).numpy()]
    return np.stack(acts, axis=1)


def _direction_classes(V: np.ndarray, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Cluster unit rows of ``V`` that agree up to ``tol`` (1-norm): representatives, labels."""
    reps: list[np.ndarray] = []
    labels = np.empty(len(V), dtype=np.intp)
    for j, v in enumerate(V):
        for k, r in enumerate(reps):
            if np.abs(r - v).sum() < tol:
                labels[j] = k
                break
        else:
            labels[j] = len(reps)
            reps.append(v)
    return np.array(reps).reshape(len(reps), V.shape[1]), labels


def verify_invariance(
    safe_set: LinearSafeActionSet,
    n_states: int = 100_000,
    seed: int = 0,
    nonlinear_step: NonlinearStep | None = None,
    noise: Zonotope | None = None,
    tol: float = 1e-9,
) -> VerificationReport:
    """Check robust invariance of ``safe_set.X`` under its safe actions (module docstring).

    For the linear model, next states ``A x + B u_a + c + w`` of all tested actions ``u_a`` and
    all vertices ``w`` of ``W`` are checked against every facet ``H_j z <= h_j`` of ``X_rci``.
    Because ``H_j (B u)`` is linear in ``u``, all actions pass facet ``j`` iff the largest
    ``H_j B u_a`` does; facets are grouped by the direction of ``H_j B`` (a handful of classes,
    with a Lipschitz slack for directions that agree only to ``1e-9``), so the cost is one
    pass over the facets per state, not one per action.

    :param nonlinear_step: ``(x (N, n), u (N, m)) -> x⁺`` without noise (e.g. the pendulum's
        semi-implicit Euler step); checked per action with every vertex of ``noise``.
    :param noise: the simulator's additive noise set (required with ``nonlinear_step``).
    :param tol: slack on ``H z <= h`` (unit-norm facets, state units).
    """
    if nonlinear_step is not None and noise is None:
        raise ValueError("nonlinear_step needs the simulator's noise set")
    S, rng = safe_set, np.random.default_rng(seed)
    X = S.X
    H, h = X.halfspaces()
    W_vertices = zonotope_corners(S.W) if S.W.dim != 2 else S.W.vertices_2d()
    worst_w = (W_vertices @ H.T).max(axis=0)  # every vertex of W, worst one per facet
    HB = H @ S.B
    hb_norm = np.linalg.norm(HB, axis=1)
    unit = HB / np.where(hb_norm > 0, hb_norm, 1.0)[:, None]
    reps, cls = _direction_classes(unit)
    u_max = np.abs(np.vstack([S.input_box.lower, S.input_box.upper])).max()
    lip = hb_norm * np.abs(unit - reps[cls]).sum(axis=1) * u_max
    # One matmul per chunk: [x, top, 1] @ [HAᵀ; class-scaled |H_j B|; offsets] = H z − h.
    onehot = (cls[None, :] == np.arange(len(reps))[:, None]) * hb_norm[None, :]
    M_aug = np.vstack([(H @ S.A).T, onehot, (H @ S.c + worst_w - h + lip)[None, :]])
    noise_vertices = zonotope_corners(noise) if noise is not None else np.zeros((0, X.dim))
    states, n_vertex = sample_states(X, n_states, rng)
    failed = np.zeros(len(states), dtype=bool)
    n_empty = n_actions = n_fail = n_nl = n_nl_fail = 0
    max_violation = -np.inf
    chunk = max(16, min(4096, 1_000_000 // len(h)))
    for i in range(0, len(states), chunk):
        x = states[i:i + chunk]
        b = S.offsets(x)
        empty = S._empty(x, b)
        n_empty += int(empty.sum())
        acts = _safe_actions(S, b, rng)  # (N, a, m)
        ok = ~empty[:, None] & np.all(np.isfinite(acts), axis=-1)
        n_actions += int(ok.sum())
        # Largest H_j B u_a over the tested actions, per direction class.
        top = np.where(ok[..., None], acts @ reps.T, -np.inf).max(axis=1)  # (N, classes)
        any_ok = ok.any(axis=1)
        top[~any_ok] = 0.0
        viol = (np.hstack([x, top, np.ones((len(x), 1))]) @ M_aug).max(axis=1)
        viol = np.where(any_ok, viol, -np.inf)
        max_violation = max(max_violation, float(viol.max()))
        bad = empty | (viol > tol)
        n_fail += int((viol > tol).sum())
        if nonlinear_step is not None:
            for k in range(acts.shape[1]):
                nxt = nonlinear_step(x, acts[:, k])
                for w in noise_vertices:
                    v = np.where(ok[:, k], ((nxt + w) @ H.T - h).max(axis=-1), -np.inf)
                    max_violation = max(max_violation, float(v.max()))
                    n_nl += int(ok[:, k].sum())
                    n_nl_fail += int((v > tol).sum())
                    bad |= v > tol
        failed[i:i + chunk] = bad
    return VerificationReport(
        system=S.rci.system, n_states=len(states), n_vertex_states=n_vertex, n_empty=n_empty,
        n_actions=n_actions, n_transitions=n_actions * len(W_vertices), n_failures=n_fail,
        n_nonlinear_transitions=n_nl, n_nonlinear_failures=n_nl_fail,
        max_violation=max_violation, states=states, failed=failed,
    )
