"""From a supersampled tissue map to the CT numbers a scanner reconstructs: tissue attenuation and
texture, heterogeneous enhancement of solid masses, partial-volume averaging over each voxel,
the in-plane point spread and correlated quantum noise."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from training.phantom.tissues import Tissue, sample_hu_table

HU_MIN, HU_MAX = -1024, 3071


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], coarse: int = 8) -> np.ndarray:
    """Low-frequency noise with unit standard deviation, cheap at any size (coarse grid, then zoom)."""
    small = tuple(max(2, -(-n // coarse) + 1) for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(small).astype(np.float32), 1.0)
    field /= max(float(field.std()), 1e-6)
    zoomed = ndimage.zoom(field, [n / s for n, s in zip(shape, small)], order=1)
    return zoomed[tuple(slice(0, n) for n in shape)]


def block_mean(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """Average over blocks of (fz, fy, fx) samples: the partial-volume effect of a finite voxel."""
    fz, fy, fx = factors
    nz, ny, nx = array.shape[0] // fz, array.shape[1] // fy, array.shape[2] // fx
    return array.reshape(nz, fz, ny, fy, nx, fx).mean(axis=(1, 3, 5), dtype=np.float32)


def block_centre(array: np.ndarray, factors: tuple[int, int, int]) -> np.ndarray:
    """The sample at the centre of each block (factors are odd): values at the voxel centres."""
    return np.ascontiguousarray(array[tuple(slice(f // 2, None, f) for f in factors)])


def attenuation(tissue: np.ndarray, lesion: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise-free HU of every sample: per-case tissue means, tissue texture, heterogeneous masses."""
    means, texture = sample_hu_table(rng)
    hu = means[tissue]
    hu += texture[tissue] * smooth_noise(rng, tissue.shape)
    masses = tissue == Tissue.SOLID_MASS
    if masses.any():
        # Solid masses enhance unevenly: a coarser blotchy pattern, with necrotic low-density islands.
        blotches = smooth_noise(rng, tissue.shape, coarse=4)
        necrotic = masses & (blotches < -1.0)
        hu[masses] += 20 * blotches[masses]
        hu[necrotic] = means[Tissue.NECROSIS] + texture[Tissue.NECROSIS] * blotches[necrotic]
        # Lesions differ from each other, too.
        for number in np.unique(lesion[masses]):
            hu[masses & (lesion == number)] += rng.uniform(-25, 25)
    return hu


def reconstruct(hu_fine: np.ndarray, factors: tuple[int, int, int], pixel_mm: float,
                rng: np.random.Generator, noise_hu: float) -> np.ndarray:
    """Voxel averages, a 1 mm FWHM in-plane blur and correlated noise of `noise_hu` standard deviation."""
    hu = block_mean(hu_fine, factors)
    sigma_px = 1.0 / 2.355 / pixel_mm
    hu = ndimage.gaussian_filter(hu, (0, sigma_px, sigma_px))
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), (0, 0.7, 0.7))
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    return np.clip(hu + noise, HU_MIN, HU_MAX)
