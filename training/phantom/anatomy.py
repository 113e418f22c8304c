"""Random abdominal anatomy, drawn from a seed and painted into a Canvas in patient coordinates.

The anatomy depends only on its random generator: the same seed gives the same patient, whatever
the acquisition (patient position, pixel size, slice thickness). Only gravity depends on the
position: bowel and stomach gas rise to the side that is up.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from training.phantom.canvas import (
    Canvas,
    Shape,
    box,
    capsule,
    ellipsoid,
    halfspace_clip,
    intersect,
    lobulated_blob,
    rotation,
    subtract,
)
from training.phantom.tissues import CYST_TISSUES, KIDNEY_TISSUES
from training.phantom.tissues import Tissue as T

SOFT = (T.VISCERAL_FAT,)
# Kidneys and the lesions that grow out of them displace soft tissue, never bone, skin or air.
_HARD = (T.AIR, T.SKIN, T.SUBCUTANEOUS_FAT, T.BONE_CORTEX, T.BONE_MARROW, T.DISC, T.CSF, T.RIB)
DISPLACEABLE = tuple(int(t) for t in T if t not in _HARD)


@dataclass
class Kidney:
    side: str          # "right" or "left" (patient side)
    centre: np.ndarray
    frame: np.ndarray  # columns: long axis, hilum direction, third axis
    semi: np.ndarray   # semi-axes along the frame's columns (mm)


@dataclass
class Lesion:
    number: int        # lesion instance number in the canvas (1..)
    kind: str          # "cyst" or "solid_mass"
    subtype: str       # cyst: simple, hyperdense, septated, calcified; solid_mass: homogeneous, necrotic
    side: str
    growth: str        # "endophytic", "exophytic" or "central" (reaching the renal sinus)
    centre: np.ndarray
    radius: float      # nominal radius (mm); nominal diameter 2 * radius
    reach: float       # largest distance of its surface from the centre (mm)
    shape: Shape


@dataclass
class Anatomy:
    kidneys: list[Kidney] = field(default_factory=list)
    lesions: list[Lesion] = field(default_factory=list)
    variant: str = "normal"  # kidney variant: normal, single, ptotic (one kidney low) or horseshoe


# How often each kidney variant occurs.
VARIANTS = {"single": 0.08, "ptotic": 0.08, "horseshoe": 0.04, "normal": 0.80}
CYST_SUBTYPES = {"simple": 0.55, "hyperdense": 0.15, "septated": 0.15, "calcified": 0.15}
GROWTHS = {"exophytic": 0.4, "endophytic": 0.4, "central": 0.2}
LESION_DIAMETER_MM = (5.0, 80.0)
LESIONS_PER_KIDNEY = (0.2, 0.3, 0.25, 0.15, 0.1)  # probability of 0, 1, 2, 3, 4 lesions


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    p = np.array(list(weights.values()), float)
    return str(rng.choice(list(weights), p=p / p.sum()))


def sample_body(rng: np.random.Generator) -> dict:
    """Body habitus: drawn first so that the acquisition can fit its field of view to it."""
    return {"body_a": rng.uniform(125, 190), "body_b": rng.uniform(85, 130), "fat": rng.uniform(4, 45)}


def _superellipse(cx, cy, a, b, power=2.4):
    return lambda X, Y, Z: (np.abs((X - cx) / a) ** power + np.abs((Y - cy) / b) ** power) <= 1.0


def _paint_body_wall(canvas: Canvas, body: dict, prone: bool) -> dict:
    a, b, fat = body["body_a"], body["body_b"], body["fat"]
    table_side = -1.0 if prone else 1.0  # the side flattened by the table (+y posterior)
    flat = 0.88 * b

    def outline(shrink_x, shrink_y):
        ellipse = _superellipse(0, 0, a - shrink_x, b - shrink_y)
        return lambda X, Y, Z: ellipse(X, Y, Z) & (table_side * Y <= flat - min(shrink_x, shrink_y))

    canvas.paint_columns(outline(0, 0), T.SKIN)
    canvas.paint_columns(outline(2.5, 2.5), T.SUBCUTANEOUS_FAT)
    # Fat is thicker in front than at the back and sides.
    canvas.paint_columns(outline(fat * 0.8, fat), T.MUSCLE)
    wall = 10.0
    canvas.paint_columns(outline(fat * 0.8 + wall, fat + wall), T.VISCERAL_FAT)
    return {"inner_a": a - fat * 0.8 - wall, "inner_b": b - fat - wall}


def _paint_spine(canvas: Canvas, rng, yv: float, z_lo: float, z_hi: float) -> None:
    level, body_height = rng.uniform(32, 36), rng.uniform(25, 28)
    phase = rng.uniform(0, level)
    ra, rb = rng.uniform(20, 24), rng.uniform(16, 19)
    canal_y = yv + rb + 10
    for z0 in np.arange(z_lo - level + phase, z_hi + level, level):
        z1 = z0 + body_height
        # Elliptic cylinders (a 1e4 mm z semi-axis) cut to the height of the body, its marrow and the disc.
        canvas.paint(intersect(ellipsoid((0, yv, 0), (ra, rb, 1e4)), box((-ra, yv - rb, z0), (ra, yv + rb, z1))),
                     T.BONE_CORTEX)
        canvas.paint(intersect(ellipsoid((0, yv, 0), (ra - 2.5, rb - 2.5, 1e4)),
                               box((-ra, yv - rb, z0 + 2), (ra, yv + rb, z1 - 2))), T.BONE_MARROW)
        canvas.paint(intersect(ellipsoid((0, yv, 0), (ra * 0.95, rb * 0.95, 1e4)),
                               box((-ra, yv - rb, z1), (ra, yv + rb, z0 + level))), T.DISC)
        # Posterior arch, spinous and transverse processes over the height of the body.
        zc = (z0 + z1) / 2
        canvas.paint(intersect(ellipsoid((0, canal_y, zc), (15, 14, 1e4)),
                               box((-15, canal_y - 2, z0 + 3), (15, canal_y + 14, z1 - 2))), T.BONE_CORTEX)
        canvas.paint(box((-4, canal_y + 8, z0 + 4), (4, canal_y + 40, z1 - 4)), T.BONE_CORTEX)
        for s in (-1, 1):
            lo, hi = sorted((s * 12, s * 48))
            canvas.paint(box((lo, canal_y - 5, zc - 5), (hi, canal_y + 5, zc + 5)), T.BONE_CORTEX)
    canvas.paint(intersect(ellipsoid((0, canal_y, 0), (9, 8, 1e4)), box((-9, canal_y - 8, z_lo - 50),
                                                                       (9, canal_y + 8, z_hi + 50))), T.CSF)


def _paint_ribs(canvas: Canvas, rng, inner_a, inner_b, z_from: float, z_hi: float) -> None:
    """Lower ribs: bony bands just inside the body wall, sloping down towards the front."""
    thickness, height = rng.uniform(5, 7), rng.uniform(9, 12)
    for zr in np.arange(z_from, z_hi + 60, rng.uniform(24, 30)):
        def inside(X, Y, Z, zr=zr):
            radial = np.sqrt((X / (inner_a + 4)) ** 2 + (Y / (inner_b + 4)) ** 2)
            zc = zr - 35 * (1 - Y / inner_b) / 2  # posterior end highest
            band = np.abs(radial - 1) * min(inner_a, inner_b) <= thickness / 2
            # The lowest ribs do not reach the front of the abdomen.
            return band & (np.abs(Z - zc) <= height / 2) & (Y > -0.35 * inner_b)
        canvas.paint(Shape(np.array([-inner_a - 10, -inner_b - 10, zr - 50]),
                           np.array([inner_a + 10, inner_b + 10, zr + 10]), inside), T.RIB, over=SOFT + (T.MUSCLE,))


def _paint_hollow(canvas: Canvas, parts: list[tuple[Shape, Shape]], content: int, gas_fraction: float,
                  gravity_up: np.ndarray) -> None:
    """A hollow organ made of overlapping (outer, lumen) parts: wall, content, and gas floating on top."""
    for outer, _ in parts:
        canvas.paint(outer, T.BOWEL_WALL, over=SOFT)
    for _, lumen in parts:
        canvas.paint(lumen, content, over=SOFT + (T.BOWEL_WALL,))
    if gas_fraction <= 0:
        return
    for _, lumen in parts:
        centre, half = (lumen.lo + lumen.hi) / 2, (lumen.hi - lumen.lo) / 2
        # Gas fills the top `gas_fraction` of the part's height along the up direction.
        level = float(gravity_up @ centre) + float(np.abs(gravity_up) @ half) * (1 - 2 * gas_fraction)
        canvas.paint(halfspace_clip(lumen, -gravity_up, -level), T.GAS, over=(content,))


def _hollow_capsule(p0, p1, radius: float, wall: float) -> tuple[Shape, Shape]:
    return capsule(p0, p1, radius), capsule(p0, p1, max(radius - wall, 1.0))


def _random_walk(rng, start, steps, step_len, box_lo, box_hi):
    points = [np.asarray(start, float)]
    direction = rng.normal(size=3)
    for _ in range(steps):
        direction = direction / np.linalg.norm(direction) + rng.normal(scale=0.8, size=3)
        direction /= np.linalg.norm(direction)
        points.append(np.clip(points[-1] + direction * step_len, box_lo, box_hi))
    return points


def _kidney_frame(side_sign: float, tilt: float, hilum_angle: float) -> np.ndarray:
    """Columns: long axis (upper pole more medial), hilum direction (medial and anterior), third axis."""
    long_axis = rotation("y", side_sign * tilt) @ np.array([0.0, 0.0, 1.0])
    hilum = np.array([-side_sign * np.cos(np.radians(hilum_angle)), -np.sin(np.radians(hilum_angle)), 0.0])
    hilum -= (hilum @ long_axis) * long_axis
    hilum /= np.linalg.norm(hilum)
    return np.column_stack([long_axis, hilum, np.cross(long_axis, hilum)])


def _paint_kidney(canvas: Canvas, rng, k: Kidney) -> None:
    c, f, (L, W, D) = k.centre, k.frame, k.semi
    envelope = subtract(ellipsoid(c, k.semi, f),
                        ellipsoid(c + f[:, 1] * W * 1.05, (L * 0.36, W * 0.5, D * 0.5), f))
    cortex_depth = rng.uniform(5, 7)
    inner = ellipsoid(c, (L - cortex_depth, W - cortex_depth, D - cortex_depth), f)
    sinus = ellipsoid(c + f[:, 1] * W * 0.4, (L * 0.55, W * 0.45, D * 0.45), f)
    pelvis = ellipsoid(c + f[:, 1] * W * 0.6, (L * 0.22, W * 0.32, D * 0.22), f)
    columns = rng.integers(5, 8)

    def medulla_inside(X, Y, Z):
        u, v, w = [f[0, i] * (X - c[0]) + f[1, i] * (Y - c[1]) + f[2, i] * (Z - c[2]) for i in range(3)]
        # Pyramids separated by columns of cortex (Bertin) around the sinus.
        fan = np.cos(columns * np.arctan2(w, v)) + np.cos(3 * np.pi * u / L)
        return inner.inside(X, Y, Z) & (fan > -0.6)

    canvas.paint(envelope, T.KIDNEY_CORTEX, over=DISPLACEABLE)
    canvas.paint(Shape(inner.lo, inner.hi, medulla_inside), T.KIDNEY_MEDULLA, over=(T.KIDNEY_CORTEX,))
    canvas.paint(sinus, T.RENAL_SINUS_FAT, over=KIDNEY_TISSUES)
    canvas.paint(pelvis, T.URINE, over=KIDNEY_TISSUES)


def _lesion_centre(rng, kidney: Kidney, growth: str, radius: float) -> np.ndarray | None:
    """Where a lesion of this growth pattern sits: across the surface (exophytic), under it
    (endophytic) or deep in the parenchyma against the sinus (central). None: try again."""
    v = rng.normal(size=3)
    v /= np.linalg.norm(v)
    if v[1] > 0.4:  # not through the hilum
        return None
    if growth == "central":
        local = np.array([v[0] * 0.5, -0.15, v[2] * 0.3]) * kidney.semi
        return kidney.centre + kidney.frame @ local
    surface_local = v / np.sqrt(((v / kidney.semi) ** 2).sum())
    surface = kidney.centre + kidney.frame @ surface_local
    outward = kidney.frame @ (surface_local / kidney.semi ** 2)
    outward /= np.linalg.norm(outward)
    if growth == "exophytic":
        depth = -radius * rng.uniform(0.0, 0.5)
    else:
        depth = min(radius * rng.uniform(0.7, 1.1), float(kidney.semi[1:].min()) * 0.8)
    return surface - outward * depth


def _place_lesions(rng, kidney: Kidney, placed: list[Lesion], gap: float, snap) -> list[Lesion]:
    """0-4 lesions on one kidney, 5-80 mm, kept `gap` mm apart from every other lesion."""
    count = rng.choice(len(LESIONS_PER_KIDNEY), p=LESIONS_PER_KIDNEY)
    lesions: list[Lesion] = []
    for _ in range(count):
        kind = "cyst" if rng.random() < 0.5 else "solid_mass"
        radius = float(np.exp(rng.uniform(*np.log(np.array(LESION_DIAMETER_MM) / 2))))
        growth = _choice(rng, GROWTHS)
        if growth == "central":
            radius = min(radius, 15.0)
        if kind == "cyst":  # round with a smooth wall
            subtype = _choice(rng, CYST_SUBTYPES)
            bumps = np.column_stack([rng.normal(size=(3, 3)), rng.uniform(-0.04, 0.04, 3)])
        else:  # lobulated, irregular; larger masses outgrow their blood supply
            subtype = "necrotic" if radius > 10 and rng.random() < 0.6 else "homogeneous"
            bumps = np.column_stack([rng.normal(size=(5, 3)), rng.uniform(-0.25, 0.3, 5)])
        bumps[:, :3] /= np.linalg.norm(bumps[:, :3], axis=1, keepdims=True)
        reach = radius * (1 + float(bumps[:, 3].clip(min=0).sum()))
        for _attempt in range(30):
            centre = _lesion_centre(rng, kidney, growth, radius)
            if centre is None:
                continue
            centre = snap(centre)
            if all(np.linalg.norm(centre - o.centre) > reach + o.reach + gap for o in placed + lesions):
                lesions.append(Lesion(len(placed) + len(lesions) + 1, kind, subtype, kidney.side, growth, centre,
                                      radius, reach, lobulated_blob(centre, radius, bumps)))
                break
    return lesions


def _paint_lesion(canvas: Canvas, rng, lesion: Lesion) -> None:
    """The lesion's own tissue, then what its subtype adds inside it: necrosis, septa, calcium.
    Those are cut to the lesion's own shape, so they never reach a neighbouring lesion."""
    n, c, r = lesion.number, lesion.centre, lesion.radius
    if lesion.kind == "solid_mass":
        canvas.paint(lesion.shape, T.SOLID_MASS, over=DISPLACEABLE, lesion=n)
        if lesion.subtype == "necrotic":
            bumps = np.column_stack([rng.normal(size=(4, 3)), rng.uniform(-0.3, 0.3, 4)])
            bumps[:, :3] /= np.linalg.norm(bumps[:, :3], axis=1, keepdims=True)
            core = c + rng.normal(scale=0.15 * r, size=3)
            canvas.paint(intersect(lesion.shape, lobulated_blob(core, r * rng.uniform(0.3, 0.6), bumps)), T.NECROSIS,
                         over=(T.SOLID_MASS,), lesion=n)
        return
    content = T.HYPERDENSE_CYST if lesion.subtype == "hyperdense" else T.CYST
    canvas.paint(lesion.shape, content, over=DISPLACEABLE, lesion=n)
    if lesion.subtype == "septated":
        for _ in range(int(rng.integers(1, 4))):
            normal = rng.normal(size=3)
            normal /= np.linalg.norm(normal)
            offset = float(normal @ c) + rng.uniform(-0.4, 0.4) * r
            half = rng.uniform(0.5, 1.0)

            def septum(X, Y, Z, normal=normal, offset=offset, half=half):
                return np.abs(normal[0] * X + normal[1] * Y + normal[2] * Z - offset) <= half

            canvas.paint(intersect(lesion.shape, Shape(lesion.shape.lo, lesion.shape.hi, septum)), T.CYST_SEPTUM,
                         over=(T.CYST,), lesion=n)
    elif lesion.subtype == "calcified":
        # A calcified arc of the wall: the outer shell within a cone of directions.
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        cos_limit = np.cos(np.radians(rng.uniform(30, 90)))
        thickness = rng.uniform(1.0, 2.5)

        def rim(X, Y, Z):
            d = (X - c[0], Y - c[1], Z - c[2])
            dist = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
            cos = (d[0] * axis[0] + d[1] * axis[1] + d[2] * axis[2]) / np.maximum(dist, 1e-6)
            return (dist >= r - thickness) & (cos >= cos_limit)

        canvas.paint(intersect(lesion.shape, Shape(lesion.shape.lo, lesion.shape.hi, rim)), T.CALCIFICATION,
                     over=CYST_TISSUES, lesion=n)


def paint_anatomy(canvas: Canvas, rng: np.random.Generator, body: dict, prone: bool, voxel_size: np.ndarray,
                  snap) -> Anatomy:
    """Paint a whole abdomen into `canvas`; returns the kidneys and lesions it placed.

    `snap(point)` moves a lesion centre onto the nearest voxel centre of the final image, so that
    even the smallest lesion has a voxel in the label map.
    """
    gravity_up = np.array([0.0, 1.0 if prone else -1.0, 0.0])  # supine: anterior (-y) is up
    wall = _paint_body_wall(canvas, body, prone)
    ia, ib = wall["inner_a"], wall["inner_b"]
    yv = ib - rng.uniform(52, 62)  # vertebral body centre, behind it the arch and back muscles
    z_lo, z_hi = float(canvas.z[0]), float(canvas.z[-1])

    # Back muscles, psoas and the great vessels.
    for s in (-1, 1):
        canvas.paint(ellipsoid((s * 32, yv + 48, 0), (26, 22, 1e4)), T.MUSCLE, over=SOFT)
        # Psoas: grows from the upper abdomen down towards the pelvis.
        canvas.paint(Shape(np.array([s * 30 - 28, yv - 25, z_lo - 1]), np.array([s * 30 + 28, yv + 25, z_hi + 1]),
                           lambda X, Y, Z, s=s: ((X - s * 34) / np.clip(14 - 0.09 * Z, 6, 26)) ** 2
                           + ((Y - yv) / np.clip(12 - 0.07 * Z, 5, 20)) ** 2 <= 1), T.MUSCLE, over=SOFT)
    _paint_spine(canvas, rng, yv, z_lo, z_hi)
    aorta = np.array([rng.uniform(5, 15), yv - 20 - rng.uniform(10, 14)])
    ivc = np.array([-rng.uniform(20, 28), yv - 20 - rng.uniform(6, 10)])
    ar = rng.uniform(9, 13)
    canvas.paint(ellipsoid((aorta[0], aorta[1], 0), (ar, ar, 1e4)), T.ARTERY, over=SOFT)
    canvas.paint(ellipsoid((ivc[0], ivc[1], 0), (rng.uniform(11, 15), rng.uniform(7, 10), 1e4)), T.VEIN, over=SOFT)

    # Kidneys: the right one lower than the left, both beside the psoas; now and then a single
    # kidney, one that has dropped (ptosis), or a horseshoe kidney whose lower poles join in front
    # of the great vessels.
    variant = _choice(rng, VARIANTS)
    z_left = rng.uniform(-10, 10)
    kidneys = []
    missing = str(rng.choice(["right", "left"])) if variant == "single" else None
    dropped = str(rng.choice(["right", "left"])) if variant == "ptotic" else None
    horseshoe = variant == "horseshoe"
    for side, s in (("right", -1.0), ("left", 1.0)):
        x = s * (rng.uniform(40, 52) if horseshoe else rng.uniform(55, 82))
        z = z_left - (rng.uniform(10, 25) if side == "right" else 0)
        if horseshoe:
            z -= rng.uniform(30, 50)
        if side == dropped:
            z -= rng.uniform(25, 60)
        centre = np.array([x, yv + rng.uniform(-5, 12), z])
        # A horseshoe kidney's long axes lean the other way: lower poles medial.
        tilt = -rng.uniform(10, 25) if horseshoe else rng.uniform(0, 30)
        frame = _kidney_frame(s, tilt, rng.uniform(15, 55))
        semi = np.array([rng.uniform(42, 64), rng.uniform(23, 34), rng.uniform(19, 28)])
        kidney = Kidney(side, centre, frame, semi)
        if side != missing:
            kidneys.append(kidney)
    z_right = kidneys[0].centre[2] if kidneys[0].side == "right" else z_left - 15

    # Solid organs, their size and position varying from patient to patient.
    liver_size, jitter = rng.uniform(0.85, 1.15), rng.uniform(-10, 10, size=(3, 3))
    liver = ellipsoid(np.array((-55, -5, z_right + 100)) + jitter[0], np.array((100, 85, 95)) * liver_size)
    canvas.paint(intersect(liver, box((-300, -300, -1e4), (30, 300, 1e4))), T.LIVER, over=SOFT)
    canvas.paint(ellipsoid(np.array((-50, -50, z_right + 45)) + jitter[1], (16, 15, 32), rotation("x", 20)), T.BILE,
                 over=SOFT + (T.LIVER,))
    canvas.paint(ellipsoid(np.array((78, 40, z_left + 85)) + jitter[2], np.array((34, 25, 55)) * rng.uniform(0.8, 1.3),
                           rotation("z", rng.uniform(15, 45))), T.SPLEEN, over=SOFT)
    for p0, p1 in [((-20, yv - 45, z_left + 15), (30, yv - 40, z_left + 30)),
                   ((30, yv - 40, z_left + 30), (75, yv - 15, z_left + 45))]:
        canvas.paint(capsule(p0, p1, rng.uniform(9, 12)), T.PANCREAS, over=SOFT)

    # Renal vessels run from the hilum to the aorta and IVC, painted before the kidney that covers their end.
    for k in kidneys:
        hilum = k.centre + k.frame[:, 1] * k.semi[1]
        canvas.paint(capsule(k.centre, (ivc[0], ivc[1], hilum[2] + 5), rng.uniform(4, 6)), T.VEIN, over=SOFT)
        canvas.paint(capsule(k.centre, (aorta[0], aorta[1], hilum[2] + 12), rng.uniform(2.5, 3.5)), T.ARTERY,
                     over=SOFT)

    # Stomach, colon and small bowel, with gas on the side that is up.
    stomach_centre, stomach_semi = np.array([45, -ib * 0.45, z_left + 95]), np.array([50.0, 35, 45])
    stomach = (ellipsoid(stomach_centre, stomach_semi), ellipsoid(stomach_centre, stomach_semi - 5))
    _paint_hollow(canvas, [stomach], T.BOWEL_FLUID, rng.uniform(0.1, 0.5), gravity_up)
    colon_r = rng.uniform(18, 24)
    cx = ia - colon_r - 8
    colon_path = [(-cx, -10, z_lo - 20), (-cx, -15, z_right + 45), (cx, -ib * 0.55, z_right + 55),
                  (cx, 5, z_left + 60), (cx + 3, 0, z_lo - 20)]
    _paint_hollow(canvas, [_hollow_capsule(a, b, colon_r, 3) for a, b in zip(colon_path[:-1], colon_path[1:])],
                  T.STOOL, rng.uniform(0.2, 0.5), gravity_up)
    # Small bowel fills the front of the abdomen; in a slim patient that space is shallow but never empty.
    box_lo = np.array([-ia + 45, -ib + 15, z_lo])
    box_hi = np.array([ia - 45, max(yv - 35, -ib + 30), z_left + 40])
    for _ in range(rng.integers(5, 10)):
        points = _random_walk(rng, rng.uniform(box_lo, box_hi), int(rng.integers(4, 9)), rng.uniform(20, 35),
                              box_lo, box_hi)
        r = rng.uniform(9, 14)
        gas = rng.uniform(0, 0.4) if rng.random() < 0.5 else 0.0
        _paint_hollow(canvas, [_hollow_capsule(a, b, r, 3) for a, b in zip(points[:-1], points[1:])],
                      T.BOWEL_FLUID, gas, gravity_up)

    _paint_ribs(canvas, rng, ia, ib, z_left + 20, z_hi)

    anatomy = Anatomy(kidneys=kidneys, variant=variant)
    for k in kidneys:
        _paint_kidney(canvas, rng, k)
    if horseshoe:
        # The isthmus: parenchyma from lower pole to lower pole, passing around and in front of the
        # IVC (right) and the aorta (left), never through them.
        poles = [k.centre - k.frame[:, 0] * k.semi[0] * 0.75 for k in kidneys]
        radius = rng.uniform(8, 13)
        front = min(aorta[1], ivc[1]) - 14 - radius
        z = (poles[0][2] + poles[1][2]) / 2
        outside = {"right": ivc[0] - 15 - radius - 3, "left": aorta[0] + ar + radius + 3}
        around = tuple(t for t in DISPLACEABLE if t not in (T.ARTERY, T.VEIN))
        for kidney, pole in zip(kidneys, poles):
            x = min(pole[0], outside["right"]) if kidney.side == "right" else max(pole[0], outside["left"])
            path = [pole, np.array([x, pole[1], z]), np.array([x, front, z]), np.array([0.0, front, z])]
            for a, b in zip(path[:-1], path[1:]):
                canvas.paint(capsule(a, b, radius), T.KIDNEY_CORTEX, over=around)
    gap = 2.5 * float(np.max(voxel_size)) + 2.0  # keeps lesions separate components in the label map
    for k in kidneys:
        anatomy.lesions += _place_lesions(rng, k, anatomy.lesions, gap, snap)
    for lesion in anatomy.lesions:
        _paint_lesion(canvas, rng, lesion)
    return anatomy
