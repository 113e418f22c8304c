"""A tissue map on an axis-aligned patient-coordinate grid, painted shape by shape.

Coordinates are DICOM patient coordinates (LPS, mm): +x towards the patient's left, +y towards the
posterior, +z towards the head. Every shape is evaluated only inside its own bounding box, so a
full-size 512 x 512 volume costs little more than the shapes it holds.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# A shape: its world bounding box (lo, hi), and a test that takes broadcastable coordinate arrays
# (X, Y, Z) of the grid points inside that box and returns which are inside the shape.
Inside = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Shape:
    lo: np.ndarray
    hi: np.ndarray
    inside: Inside


class Canvas:
    """Tissue ids (uint8) and lesion instance numbers (uint8, 0 = none) on the grid x, y, z."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        self.x, self.y, self.z = x, y, z
        shape = (len(z), len(y), len(x))
        self.tissue = np.zeros(shape, np.uint8)
        self.lesion = np.zeros(shape, np.uint8)

    def _box(self, lo, hi):
        def axis(coords, a, b):
            return slice(int(np.searchsorted(coords, a, "left")), int(np.searchsorted(coords, b, "right")))

        sx, sy, sz = axis(self.x, lo[0], hi[0]), axis(self.y, lo[1], hi[1]), axis(self.z, lo[2], hi[2])
        if sx.start >= sx.stop or sy.start >= sy.stop or sz.start >= sz.stop:
            return None
        coords = (self.x[sx][None, None, :], self.y[sy][None, :, None], self.z[sz][:, None, None])
        return (sz, sy, sx), coords

    def paint(self, shape: Shape, tissue: int, over: tuple[int, ...] | None = None, lesion: int = 0) -> None:
        """Set `tissue` where the shape is; with `over`, only where the tissue is one of those ids."""
        box = self._box(shape.lo, shape.hi)
        if box is None:
            return
        index, (X, Y, Z) = box
        mask = np.broadcast_to(shape.inside(X, Y, Z), self.tissue[index].shape)
        if over is not None:
            mask = mask & np.isin(self.tissue[index], over)
        self.tissue[index][mask] = tissue
        if lesion:
            self.lesion[index][mask] = lesion

    def paint_columns(self, inside_xy: Inside, tissue: int, z_range=None, over=None) -> None:
        """Paint a prism that is the same on every slice of z_range (all slices when None)."""
        X, Y = self.x[None, :], self.y[:, None]
        mask2d = np.broadcast_to(inside_xy(X, Y, None), (len(self.y), len(self.x)))
        ks = slice(None) if z_range is None else slice(
            int(np.searchsorted(self.z, z_range[0])), int(np.searchsorted(self.z, z_range[1], "right")))
        block = self.tissue[ks]
        mask = np.broadcast_to(mask2d, block.shape)
        if over is not None:
            mask = mask & np.isin(block, over)
        block[mask] = tissue


def rotation(axis: str, degrees: float) -> np.ndarray:
    """Rotation matrix about a patient axis ('x', 'y' or 'z')."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _local(X, Y, Z, centre, frame):
    """Coordinates in a frame whose columns are the local axes expressed in patient space."""
    d = (X - centre[0], Y - centre[1], Z - centre[2])
    return [frame[0, k] * d[0] + frame[1, k] * d[1] + frame[2, k] * d[2] for k in range(3)]


def _half_extent(semi, frame):
    return np.sqrt(((frame * np.asarray(semi, float)[None, :]) ** 2).sum(axis=1))


def ellipsoid(centre, semi, frame=None, scale: float = 1.0) -> Shape:
    """Solid ellipsoid; `frame` (3x3, columns = local axes) rotates it; `scale` grows or shrinks it."""
    centre = np.asarray(centre, float)
    frame = np.eye(3) if frame is None else np.asarray(frame, float)
    semi = np.asarray(semi, float) * scale
    half = _half_extent(semi, frame)

    def inside(X, Y, Z):
        u, v, w = _local(X, Y, Z, centre, frame)
        return (u / semi[0]) ** 2 + (v / semi[1]) ** 2 + (w / semi[2]) ** 2 <= 1.0

    return Shape(centre - half, centre + half, inside)


def capsule(p0, p1, radius: float) -> Shape:
    """All points within `radius` of the segment p0-p1 (a vessel or a bowel segment)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    seg = p1 - p0
    length2 = max(float(seg @ seg), 1e-9)

    def inside(X, Y, Z):
        t = np.clip(((X - p0[0]) * seg[0] + (Y - p0[1]) * seg[1] + (Z - p0[2]) * seg[2]) / length2, 0, 1)
        return (X - p0[0] - t * seg[0]) ** 2 + (Y - p0[1] - t * seg[1]) ** 2 + (Z - p0[2] - t * seg[2]) ** 2 \
            <= radius ** 2

    return Shape(np.minimum(p0, p1) - radius, np.maximum(p0, p1) + radius, inside)


def lobulated_blob(centre, radius: float, bumps: np.ndarray, bump_width: float = 0.35) -> Shape:
    """A sphere whose radius varies smoothly with direction: r(u) = R (1 + sum_k b_k exp(-(1 - u.d_k)/w)).

    `bumps` is an (n, 4) array of unit directions d_k and amplitudes b_k (negative for a notch).
    """
    centre = np.asarray(centre, float)
    dirs, amps = bumps[:, :3], bumps[:, 3]
    reach = radius * (1 + max(0.0, float(amps.clip(min=0).sum())))

    def inside(X, Y, Z):
        dx, dy, dz = X - centre[0], Y - centre[1], Z - centre[2]
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        safe = np.maximum(r, 1e-6)
        factor = 1.0
        for d, b in zip(dirs, amps):
            cos = (dx * d[0] + dy * d[1] + dz * d[2]) / safe
            factor = factor + b * np.exp(-(1 - cos) / bump_width)
        return r <= radius * factor

    return Shape(centre - reach, centre + reach, inside)


def box(lo, hi) -> Shape:
    """An axis-aligned box, or, intersected with another shape, a clip of it to that box."""
    return Shape(np.asarray(lo, float), np.asarray(hi, float), lambda X, Y, Z: np.True_)


def intersect(a: Shape, b: Shape) -> Shape:
    return Shape(np.maximum(a.lo, b.lo), np.minimum(a.hi, b.hi),
                 lambda X, Y, Z: a.inside(X, Y, Z) & b.inside(X, Y, Z))


def subtract(a: Shape, b: Shape) -> Shape:
    return Shape(a.lo, a.hi, lambda X, Y, Z: a.inside(X, Y, Z) & ~b.inside(X, Y, Z))


def halfspace_clip(a: Shape, normal, offset: float) -> Shape:
    """The part of `a` where normal . p <= offset."""
    n = np.asarray(normal, float)
    return Shape(a.lo, a.hi, lambda X, Y, Z: a.inside(X, Y, Z) & (n[0] * X + n[1] * Y + n[2] * Z <= offset))
