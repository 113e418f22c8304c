"""Anatomy-aware post-processing of a label map: the rules a model's cross-validation kept.

As nnU-Net's own `determine_postprocessing` decides "keep the largest component" per class, the
training workspace tries each rule on the cross-validation predictions and keeps it only when it
raises that class's F1 (training/postprocessing_choice.py); the kept rules go into the model
package's `model.json` ("postprocessing"), and the app applies exactly those. A package without
them runs with none.

- `kidney_largest_per_side`: kidney and lesions together form renal complexes (26-connected);
  on each side of the body's midline only the complex holding most of that side's kidney voxels
  keeps its kidney label. Kidney predicted anywhere else (abdominal wall, spleen, bowel) becomes
  background. A horseshoe kidney is one complex on both sides; a pole cut off by a central mass
  still touches the mass and stays.
- `cyst_in_mass_border_share`: a cyst component of which at least this share of the border (the
  voxels around it) is solid mass becomes part of that mass; 0 takes any contact. A solid mass with
  a necrotic or cystic part is one solid lesion (as in Bosniak's classification, where a solid
  component makes a cystic lesion suspicious); calling its cystic part a separate cyst would report
  a benign finding inside a malignant-looking one. A necrotic core is wrapped in its mass, while a
  cyst that merely lies against a mass shares a small part of its border with it. Solid is never
  turned to cyst. (Cards written before this rule name `cyst_touching_mass_is_mass`: true is a
  share of 0.)
- `lesion_max_distance_mm`: a lesion component farther than this from every kidney voxel becomes
  background: renal masses and cysts grow from the kidney. Distances are between voxel edges, so
  a lesion touching the kidney is 0 mm from it.
- `min_solid_mass_ml`, `min_cyst_ml`: a smaller lesion component is dropped: it becomes kidney
  where it touches kidney, background elsewhere.
Rules run in that order. Side comes from patient coordinates (the body's midline), never from
array indices, so any orientation of the grid gives the same result.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from renalnode import labels
from renalnode.measurements import voxel_centres_mm

BODY_HU = -300.0
CONNECTIVITY = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class PostprocessingRules:
    kidney_largest_per_side: bool = False
    cyst_in_mass_border_share: float | None = None
    lesion_max_distance_mm: float | None = None
    min_solid_mass_ml: float = 0.0
    min_cyst_ml: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> PostprocessingRules:
        """Rules from a model card; an unknown rule is an error, never silently skipped."""
        values = dict(values or {})
        if "cyst_touching_mass_is_mass" in values:
            touching = values.pop("cyst_touching_mass_is_mass")
            if not isinstance(touching, bool):
                raise ValueError(f"cyst_touching_mass_is_mass must be true or false, not {touching!r}")
            values.setdefault("cyst_in_mass_border_share", 0.0 if touching else None)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown post-processing rules {unknown}; this renalnode knows "
                             f"{[f.name for f in fields(cls)]}")
        largest = values.get("kidney_largest_per_side", False)
        if not isinstance(largest, bool):
            raise ValueError(f"kidney_largest_per_side must be true or false, not {largest!r}")
        for name in ("cyst_in_mass_border_share", "lesion_max_distance_mm", "min_solid_mass_ml", "min_cyst_ml"):
            value = values.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{name} must be a number, not {value!r}")
        rules = cls(**values)
        if rules.lesion_max_distance_mm is not None and rules.lesion_max_distance_mm < 0:
            raise ValueError("lesion_max_distance_mm must not be negative")
        if rules.cyst_in_mass_border_share is not None and not 0 <= rules.cyst_in_mass_border_share <= 1:
            raise ValueError("cyst_in_mass_border_share must be between 0 and 1")
        if rules.min_solid_mass_ml < 0 or rules.min_cyst_ml < 0:
            raise ValueError("minimum lesion volumes must not be negative")
        return rules


def components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, tuple[slice, ...]]]]:
    """26-connected components: the label array and, per component, (index, voxels, bounding box
    grown by one voxel). Work on a component stays inside its box, so a 512 x 512 x 600 CT with many
    specks costs no more than a few full-volume passes."""
    found, count = ndimage.label(mask, CONNECTIVITY)
    sizes = np.bincount(found.ravel(), minlength=count + 1)
    parts = []
    for index, box in enumerate(ndimage.find_objects(found), start=1):
        grown = tuple(slice(max(0, b.start - 1), min(n, b.stop + 1)) for b, n in zip(box, mask.shape))
        parts.append((index, int(sizes[index]), grown))
    return found, parts


def body_midline_x(geometry: sitk.Image, hu: np.ndarray) -> float:
    """Patient x (mm) of the body's midline: the mean x of the largest region above BODY_HU.
    `hu` is in numpy order (k, j, i) on the grid of `geometry`."""
    found, parts = components(hu > BODY_HU)
    if not parts:
        raise ValueError("no body in the image")
    largest = max(parts, key=lambda part: part[1])[0]
    # Patient coordinates are affine in the voxel indices, so the mean x is the x of the mean index.
    centre = np.array([ndimage.center_of_mass(found == largest)])
    return float(voxel_centres_mm(centre, geometry)[0, 0])


def right_of_midline(geometry: sitk.Image, midline_x: float, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean array (broadcastable to `shape`) of the voxels on the patient's right (lower x, LPS).
    Only the axes that move along patient x take part, so an axial grid gives one row, not a volume."""
    direction = np.array(geometry.GetDirection()).reshape(3, 3)
    spacing = np.array(geometry.GetSpacing())
    # x of voxel (i, j, k) = origin_x + sum over axes of index * spacing * direction[0, axis].
    x = np.full((1, 1, 1), geometry.GetOrigin()[0], np.float32)
    for axis, n in enumerate(shape[::-1]):  # i, j, k
        if direction[0, axis]:
            steps = (np.arange(n) * spacing[axis] * direction[0, axis]).astype(np.float32)
            x = x + steps.reshape([-1 if a == 2 - axis else 1 for a in range(3)])
    return x < midline_x


def _keep_largest_kidney_per_side(label: np.ndarray, right: np.ndarray) -> np.ndarray:
    kidney = label == labels.KIDNEY
    found, count = ndimage.label(label != labels.BACKGROUND, CONNECTIVITY)
    if not count:
        return label
    kidney_right = np.bincount(found[kidney & right], minlength=count + 1)
    kidney_left = np.bincount(found[kidney & ~right], minlength=count + 1)
    keep = {int(counts[1:].argmax()) + 1 for counts in (kidney_right, kidney_left) if counts[1:].any()}
    label = label.copy()
    label[kidney & ~np.isin(found, sorted(keep))] = labels.BACKGROUND
    return label


def _merge_cysts_into_enclosing_masses(label: np.ndarray, min_share: float) -> np.ndarray:
    mass = label == labels.SOLID_MASS
    if not mass.any():
        return label
    found, parts = components(label == labels.CYST)
    label = label.copy()
    for index, _, box in parts:
        part = found[box] == index
        border = ndimage.binary_dilation(part, CONNECTIVITY) & ~part
        on_mass = int((border & mass[box]).sum())
        if on_mass and on_mass >= min_share * int(border.sum()):
            label[box][part] = labels.SOLID_MASS
    return label


def _drop_lesions_far_from_kidney(label: np.ndarray, spacing_zyx: np.ndarray, limit_mm: float) -> np.ndarray:
    lesion = np.isin(label, labels.LESION_LABELS)
    if not lesion.any():
        return label
    kidney = label == labels.KIDNEY
    # Distances are taken only in the kidneys' bounding box grown by the limit: a lesion with no
    # voxel there is far by definition, and a prediction with specks all over the abdomen costs no
    # more than a clean one.
    distance, box = None, None
    if kidney.any():
        reach = np.ceil(limit_mm / spacing_zyx).astype(int) + 2
        where = np.argwhere(kidney)
        box = tuple(slice(max(0, lo - r), min(n, hi + r + 1))
                    for lo, hi, r, n in zip(where.min(axis=0), where.max(axis=0), reach, label.shape))
        distance = ndimage.distance_transform_edt(~kidney[box], sampling=spacing_zyx).astype(np.float32)
    # Between voxel centres a touching lesion is one voxel away: edges are one voxel diagonal closer.
    limit_centres = limit_mm + float(np.linalg.norm(spacing_zyx))
    label = label.copy()
    for value in labels.LESION_LABELS:
        found, count = ndimage.label(label == value, CONNECTIVITY)
        if not count:
            continue
        near = np.zeros(count + 1, bool)
        if distance is not None:
            inside = found[box]
            close = inside[(inside > 0) & (distance <= limit_centres)]
            near[np.unique(close)] = True
        label[(found > 0) & ~near[found]] = labels.BACKGROUND
    return label


def drop_small_lesions(label: np.ndarray, voxel_ml: float, minimum_ml: dict[int, float]) -> np.ndarray:
    """Lesion components under `minimum_ml[label value]` become kidney where they touch kidney,
    background elsewhere."""
    label = label.copy()
    for value, minimum in minimum_ml.items():
        if minimum <= 0:
            continue
        kidney = label == labels.KIDNEY
        found, parts = components(label == value)
        for index, size, box in parts:
            if size * voxel_ml < minimum:
                part = found[box] == index
                touches = (ndimage.binary_dilation(part, CONNECTIVITY) & kidney[box]).any()
                label[box][part] = labels.KIDNEY if touches else labels.BACKGROUND
    return label


def apply_rules(label: np.ndarray, geometry: sitk.Image, hu: np.ndarray, rules: PostprocessingRules,
                midline_x: float | None = None) -> np.ndarray:
    """The label map (numpy order k, j, i on the grid of `geometry`) with `rules` applied.
    `hu` is the CT on the same grid (for the body's midline, unless `midline_x` gives it)."""
    if label.shape != hu.shape:
        raise ValueError(f"label map {label.shape} is not on the CT grid {hu.shape}")
    spacing_zyx = np.array(geometry.GetSpacing()[::-1], float)
    if rules.kidney_largest_per_side:
        midline = body_midline_x(geometry, hu) if midline_x is None else midline_x
        label = _keep_largest_kidney_per_side(label, np.broadcast_to(
            right_of_midline(geometry, midline, label.shape), label.shape))
    if rules.cyst_in_mass_border_share is not None:
        label = _merge_cysts_into_enclosing_masses(label, rules.cyst_in_mass_border_share)
    if rules.lesion_max_distance_mm is not None:
        label = _drop_lesions_far_from_kidney(label, spacing_zyx, rules.lesion_max_distance_mm)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    return drop_small_lesions(label, voxel_ml, {labels.SOLID_MASS: rules.min_solid_mass_ml,
                                                 labels.CYST: rules.min_cyst_ml})
