"""The safety interface of the tasks whose safe actions come from an RCI set (pendulum, quadrotor).

Chapter 3 (chapters/03_tasks.py). Both tasks read their safe action set from a
:class:`~tutorial_rl.sets.safe_actions.LinearSafeActionSet` in physical units and present it to
agents and the safeguard in the normalised action space [-1, 1]^m. The map between the two uses
one scale on every component, so a Euclidean projection (and a least-violation LP) has the same
solution in either coordinates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tutorial_rl.envs.action_scaling import AffineActionMap
from tutorial_rl.safeguards import check_action, least_violating_action

if TYPE_CHECKING:
    from gymnasium import spaces

    from tutorial_rl.sets.safe_actions import LinearSafeActionSet


class RCISafeActions:
    """Mixin: ``safe_action_set`` and its companions for an env with an RCI safe set.

    The env sets ``self.state`` (physical) and ``self.action_space``, defines the class attribute
    ``action_map`` and implements :meth:`rci_safe_set` (cached, built once per process).
    """

    action_map: AffineActionMap
    state: np.ndarray
    action_space: spaces.Box

    def rci_safe_set(self) -> LinearSafeActionSet:
        """The task's safe action set object, in physical units."""
        raise NotImplementedError

    def safe_action_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Safe normalised actions {a : A a <= b} (A [k, m], b [k]) for the current state.

        :meth:`safe_action_set_physical` mapped by ``action_map``
        (:meth:`~tutorial_rl.envs.action_scaling.AffineActionMap.halfspaces_to_normalized`); an
        empty physical set (outside the RCI set) stays empty.
        """
        return self.action_map.halfspaces_to_normalized(*self.safe_action_set_physical())

    def safe_action_set_physical(self) -> tuple[np.ndarray, np.ndarray]:
        """Safe actions {u : A u <= b} in physical units for the current state."""
        A, b = self.rci_safe_set().halfspaces(self.state)
        return np.asarray(A, dtype=float), np.asarray(b, dtype=float)

    def safe_set_is_empty(self) -> bool:
        """Whether no action is safe in the current state (only possible outside the RCI set)."""
        return bool(self.rci_safe_set().is_empty(self.state))

    def project_reference(self, action: np.ndarray) -> np.ndarray:
        """Reference projection of a normalised ``action`` with the cvxpy containment form.

        Slow; for tests and chapter 2. It runs in physical units (where the containment form
        lives) and maps back. Takes and returns normalised actions.
        """
        u = self.action_map.to_physical(check_action(action, self.action_space))
        projected = self.rci_safe_set().project_containment(self.state, u)
        return self.action_map.to_normalized(np.asarray(projected, dtype=float))

    def fallback_action(self) -> np.ndarray:
        """Least-violating normalised action, used where the safe set is empty (outside RCI).

        It uses the raw offsets b(x) of the containment rows (``offsets``), not the all-(-1)
        marker that ``halfspaces`` returns for an empty set, so it pushes the next state as deep
        into the RCI set as the action box allows.
        """
        safe_set = self.rci_safe_set()
        b = safe_set.offsets(self.state)[0]
        u = least_violating_action(safe_set.action_rows, b, self.action_map.low,
                                   self.action_map.high)
        return np.clip(self.action_map.to_normalized(u), -1.0, 1.0)
