"""Tiny numpy rasteriser for the ``rgb_array`` frames of the course environments.

Chapter 3 (chapters/03_tasks.py) shows rollouts of the three tasks as frames; DESIGN.md §5 lists
the tasks. Frames are drawn straight into an ``H x W x 3`` uint8 array with numpy masks, which costs
a few hundred microseconds per frame: no pygame, no matplotlib figure per step. Every shape is given
in world coordinates (metres) and only the pixels of its bounding box are touched, so the cost of a
frame does not grow with the size of the canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (150, 150, 150)
LIGHT_GREY: Color = (225, 225, 225)
BLUE: Color = (0, 121, 140)
RED: Color = (209, 73, 91)
GREEN: Color = (76, 159, 112)
ORANGE: Color = (237, 174, 73)


class Canvas:
    """An RGB image with a world-coordinate frame (y up) on top of it.

    :param size: width and height of the square image in pixels.
    :param bounds: ``(x_min, x_max, y_min, y_max)`` of the world window shown (a square window keeps
        circles round).
    :param background: fill colour.
    """

    def __init__(
        self, size: int, bounds: tuple[float, float, float, float], background: Color = WHITE
    ) -> None:
        self.size = int(size)
        self.x_min, self.x_max, self.y_min, self.y_max = (float(v) for v in bounds)
        self.image = np.empty((self.size, self.size, 3), dtype=np.uint8)
        self.image[:] = background
        self._sx = self.size / (self.x_max - self.x_min)
        self._sy = self.size / (self.y_max - self.y_min)

    def _window(
        self, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Pixel slices covering the world box [lo, hi] and the world coordinates of the pixels."""
        c0 = max(int(np.floor((lo[0] - self.x_min) * self._sx)), 0)
        c1 = min(int(np.ceil((hi[0] - self.x_min) * self._sx)) + 1, self.size)
        r0 = max(int(np.floor((self.y_max - hi[1]) * self._sy)), 0)
        r1 = min(int(np.ceil((self.y_max - lo[1]) * self._sy)) + 1, self.size)
        if c0 >= c1 or r0 >= r1:
            return None  # entirely off the canvas
        x = self.x_min + (np.arange(c0, c1) + 0.5) / self._sx
        y = self.y_max - (np.arange(r0, r1) + 0.5) / self._sy
        return slice(r0, r1), slice(c0, c1), x[None, :], y[:, None]

    def circle(self, center: Sequence[float], radius: float, color: Color) -> None:
        """Fill the disc of ``radius`` around ``center``."""
        c = np.asarray(center, dtype=float)
        win = self._window(c - radius, c + radius)
        if win is None:
            return
        rows, cols, x, y = win
        mask = (x - c[0]) ** 2 + (y - c[1]) ** 2 <= radius**2
        self.image[rows, cols][mask] = color

    def segment(
        self, start: Sequence[float], end: Sequence[float], width: float, color: Color
    ) -> None:
        """Draw a thick line (a capsule of half-width ``width / 2``) from ``start`` to ``end``."""
        p0, p1 = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
        half = width / 2
        win = self._window(np.minimum(p0, p1) - half, np.maximum(p0, p1) + half)
        if win is None:
            return
        rows, cols, x, y = win
        d = p1 - p0
        length2 = float(d @ d)
        # parameter of the closest point on the segment, clipped to its ends
        t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1]) / length2 if length2 > 0 else 0.0 * x
        t = np.clip(t, 0.0, 1.0)
        mask = (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 <= half**2
        self.image[rows, cols][mask] = color

    def polygon(self, vertices: np.ndarray, color: Color) -> None:
        """Fill a convex polygon given by its vertices ``[n, 2]`` in either orientation."""
        v = np.asarray(vertices, dtype=float)
        win = self._window(v.min(0), v.max(0))
        if win is None:
            return
        rows, cols, x, y = win
        e = np.roll(v, -1, axis=0) - v
        # a point is inside iff it lies on the same side of every edge (sign of the cross product)
        cross = [e[i, 0] * (y - v[i, 1]) - e[i, 1] * (x - v[i, 0]) for i in range(len(v))]
        stack = np.stack(np.broadcast_arrays(*cross))
        mask = (stack >= 0).all(0) | (stack <= 0).all(0)
        self.image[rows, cols][mask] = color

    def box_outline(
        self, lo: Sequence[float], hi: Sequence[float], width: float, color: Color
    ) -> None:
        """Draw the outline of the axis-aligned box [lo, hi]."""
        (x0, y0), (x1, y1) = lo, hi
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            self.segment(a, b, width, color)

    def frame(self) -> np.ndarray:
        """A copy of the image (callers may keep it while the next frame is drawn)."""
        return self.image.copy()
