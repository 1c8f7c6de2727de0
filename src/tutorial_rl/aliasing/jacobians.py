"""Which Jacobian of the projection at a boundary point, and the penalty's gradient (Chapter 6,
"Which Jacobian at a boundary point?", the review's first objection; Chapter 7, "The penalty and
the rank-deficient Jacobian", the second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tutorial_rl.aliasing.scenarios import as_float64
from tutorial_rl.projection import active_set, project_polytope, projection_jacobian
from tutorial_rl.sets.polygon import ordered_vertices, polygon_faces

__all__ = ["JacobianComparison", "boundary_points", "compare_jacobians", "is_on_boundary",
           "penalty_gradient_check"]


def boundary_points(A: np.ndarray, b: np.ndarray, vertex: int = 0,
                    offset: float = 0.3) -> dict[str, np.ndarray]:
    """Named test points around vertex ``vertex`` of {u : A u <= b} (chapter 6, review §3).

    Interior, exactly on a face (the midpoint of the edge that starts at the vertex), facing that
    face, exactly at the vertex, on the edge of the vertex's normal cone (vertex + offset·n_face),
    and inside the vertex cone (along the bisector of its two normals).
    """
    faces = polygon_faces(np.asarray(A, float), np.asarray(b, float))
    v, w, n = faces[vertex]
    n_prev = faces[vertex - 1][2]
    bis = (n + n_prev) / np.linalg.norm(n + n_prev)
    centre = ordered_vertices(A, b).mean(0)
    return {"interior": centre, "exactly on a face": (v + w) / 2,
            "facing the face": (v + w) / 2 + offset * n, "exactly at the vertex": v,
            "edge of the vertex cone": v + offset * n, "inside the vertex cone": v + offset * bis}


@dataclass(frozen=True)
class JacobianComparison:
    """dΦ/dũ at one point: the package's rule, cvxpylayers/diffcp, and the nearby pieces.

    ``pieces``: the distinct Jacobians at points a distance ``radius`` around the point (the
    limiting Jacobians, whose set is the B-subdifferential of the piecewise-affine Φ there; the
    package's rule returns the one of largest rank);
    ``exact_piece`` / ``cvx_piece``: which of them each method returned (−1: none).
    """

    name: str
    point: np.ndarray
    projection: np.ndarray
    active: list[int]
    exact: np.ndarray
    cvxpylayers: np.ndarray
    pieces: list[np.ndarray]
    exact_piece: int
    cvx_piece: int

    @property
    def agree(self) -> bool:
        """Whether both methods return the same matrix (to 1e-4)."""
        return bool(np.abs(self.exact - self.cvxpylayers).max() < 1e-4)


def compare_jacobians(A: np.ndarray, b: np.ndarray, points: dict[str, np.ndarray],
                      radius: float = 1e-5, directions: int = 72) -> list[JacobianComparison]:
    """The package's Jacobian vs cvxpylayers (diffcp) at each named point.

    The package returns the Jacobian of the locally active face (the rows with a positive KKT
    multiplier; :mod:`tutorial_rl.projection.face`), a limiting Jacobian, so ``exact_piece`` is
    always one of ``pieces``. Chapter 6, section "Which Jacobian at a boundary point?" (the
    review's first objection);
    DESIGN.md §3 (sensitivity) and §6 (reference). ``radius`` and ``directions`` define the ring
    of nearby points whose Jacobians are the adjacent pieces.
    """
    A_t, b_t = as_float64(A), as_float64(b)
    angles = np.linspace(0, 2 * np.pi, directions, endpoint=False)
    ring = radius * np.stack([np.cos(angles), np.sin(angles)], 1)
    out = []
    for name, p in points.items():
        u = as_float64(p)[None]
        exact = projection_jacobian(u, A_t, b_t)[0].numpy()
        cvx = torch.autograd.functional.jacobian(
            lambda v: project_polytope(v, A_t, b_t, method="cvxpylayers")[0], u)[:, 0].numpy()
        around = projection_jacobian(as_float64(p[None] + ring), A_t, b_t).numpy()
        pieces: list[np.ndarray] = []
        for J in around:
            if not any(np.abs(J - P).max() < 1e-6 for P in pieces):
                pieces.append(J)

        def which(J: np.ndarray, pieces: list[np.ndarray] = pieces) -> int:
            return next((i for i, P in enumerate(pieces) if np.abs(J - P).max() < 1e-4), -1)

        out.append(JacobianComparison(
            name, np.asarray(p), project_polytope(u, A_t, b_t)[0].numpy(),
            torch.nonzero(active_set(u, A_t, b_t)[0]).flatten().tolist(), exact, cvx, pieces,
            which(exact), which(cvx)))
    return out


def penalty_gradient_check(A: np.ndarray, b: np.ndarray, points: np.ndarray,
                           alpha: float = 1.0) -> dict[str, np.ndarray]:
    """Chapter 7: ∇ α‖ũ − Φ(ũ)‖² by autograd vs 2α(ũ − Φ(ũ)), and ‖Jᵀ(ũ − Φ(ũ))‖ (zero).

    :returns: arrays [N, 2] ``autograd`` and ``closed_form``, [N] ``J_residual`` and ``rank``.
    """
    A_t, b_t = as_float64(A), as_float64(b)
    u = as_float64(points).requires_grad_(True)
    safe = project_polytope(u, A_t, b_t)
    (grad,) = torch.autograd.grad((alpha * (u - safe).square().sum(-1)).sum(), u)
    res = (u - safe).detach()
    J = projection_jacobian(u.detach(), A_t, b_t)
    return {"autograd": grad.numpy(), "closed_form": (2 * alpha * res).numpy(),
            "J_residual": (J.mT @ res[..., None]).squeeze(-1).norm(dim=-1).numpy(),
            "rank": torch.linalg.matrix_rank(J, atol=1e-9, rtol=0.0).numpy(),
            "distance": res.norm(dim=-1).numpy()}


def is_on_boundary(point: np.ndarray, A: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether a feasible point has a constraint active within ``tol`` (rows normalised).

    Used by chapters 6 and 7 and the tests to classify where a policy action ended.
    """
    slack = (np.asarray(b) - np.asarray(A) @ np.asarray(point)) / np.linalg.norm(A, axis=1)
    return bool(slack.min() >= -tol and slack.min() <= tol)
