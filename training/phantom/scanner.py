"""From a supersampled tissue map to the CT numbers a scanner reconstructs: tissue attenuation and
texture, heterogeneous enhancement of solid masses, partial-volume averaging over each voxel, and
a reconstruction drawn at random per case: the point spread and edge overshoot of its kernel,
correlated quantum noise of its dose, streaks from dense structures and beam-hardening cupping."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from training.phantom.tissues import Tissue, sample_hu_table

HU_MIN, HU_MAX = -1024, 3071
# Ranges the reconstruction is drawn from (domain randomisation), per case.
NOISE_HU = (4.0, 40.0)             # standard deviation of the noise in water
NOISE_GRAIN_PX = (0.4, 1.4)        # in-plane correlation length of the noise (its texture)
PSF_FWHM_MM = (0.5, 1.8)           # in-plane point spread: sharp (bone) to smooth (soft tissue) kernels
EDGE_ENHANCEMENT = (0.0, 0.6)      # overshoot at edges of sharp kernels
STREAK_FRACTION, STREAK_HU = 0.35, (15.0, 80.0)
CUPPING_FRACTION, CUPPING_HU = 0.5, (5.0, 30.0)
BODY_HU = -500.0


@dataclass(frozen=True)
class Reconstruction:
    noise_hu: float
    noise_grain_px: float
    psf_fwhm_mm: float
    edge_enhancement: float
    streak_hu: float      # 0: no streaks
    cupping_hu: float     # 0: no cupping

    def as_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}


def sample_reconstruction(rng: np.random.Generator, noise_hu: float | None = None) -> Reconstruction:
    """A random kernel, dose and artefact level; `noise_hu` fixes the noise instead of drawing it."""
    drawn = float(rng.uniform(*NOISE_HU))
    return Reconstruction(
        noise_hu=drawn if noise_hu is None else float(noise_hu),
        noise_grain_px=float(rng.uniform(*NOISE_GRAIN_PX)),
        psf_fwhm_mm=float(rng.uniform(*PSF_FWHM_MM)),
        edge_enhancement=float(rng.uniform(*EDGE_ENHANCEMENT)),
        streak_hu=float(rng.uniform(*STREAK_HU)) if rng.random() < STREAK_FRACTION else 0.0,
        cupping_hu=float(rng.uniform(*CUPPING_HU)) if rng.random() < CUPPING_FRACTION else 0.0)


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


def attenuation(tissue: np.ndarray, lesion: np.ndarray, rng: np.random.Generator, phase: str) -> np.ndarray:
    """Noise-free HU of every sample: per-case tissue means, tissue texture, heterogeneous masses."""
    means, texture = sample_hu_table(rng, phase)
    hu = means[tissue]
    hu += texture[tissue] * smooth_noise(rng, tissue.shape)
    masses = tissue == Tissue.SOLID_MASS
    if masses.any():
        # Solid masses enhance unevenly (a coarser blotchy pattern), and differ from each other.
        blotches = smooth_noise(rng, tissue.shape, coarse=4)
        hu[masses] += rng.uniform(5, 25) * blotches[masses]
        for number in np.unique(lesion[masses]):
            hu[masses & (lesion == number)] += rng.uniform(-20, 20)
    return hu


def _streak_pattern(rng: np.random.Generator, shape: tuple[int, int], amplitude: float) -> np.ndarray:
    """Thin bright and dark lines through the image centre region, as photon starvation between
    dense structures draws them."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    pattern = np.zeros(shape, np.float32)
    for _ in range(int(rng.integers(3, 9))):
        angle = rng.uniform(0, np.pi)
        centre = np.array(shape) / 2 + rng.normal(scale=0.08, size=2) * np.array(shape)
        distance = (rows - centre[0]) * np.cos(angle) - (cols - centre[1]) * np.sin(angle)
        width = rng.uniform(0.6, 2.0)
        pattern += rng.choice([-1, 1]) * rng.uniform(0.4, 1.0) * np.exp(-(distance / width) ** 2)
    return amplitude * pattern


def reconstruct(hu_fine: np.ndarray, factors: tuple[int, int, int], pixel_mm: float,
                rng: np.random.Generator, recon: Reconstruction) -> np.ndarray:
    """Voxel averages, then the kernel's blur and overshoot, artefacts and correlated noise."""
    hu = block_mean(hu_fine, factors)
    sigma_px = recon.psf_fwhm_mm / 2.355 / pixel_mm
    hu = ndimage.gaussian_filter(hu, (0, sigma_px, sigma_px))
    if recon.edge_enhancement:
        hu += recon.edge_enhancement * (hu - ndimage.gaussian_filter(hu, (0, 1.5, 1.5)))
    body = hu > BODY_HU
    if recon.cupping_hu:
        # Beam hardening: the middle of the body reads lower than its edge.
        rows, cols = np.ogrid[0:hu.shape[1], 0:hu.shape[2]]
        half = np.array(hu.shape[1:], np.float32) / 2
        radius2 = ((rows - half[0]) / half[0]) ** 2 + ((cols - half[1]) / half[1]) ** 2
        hu -= (recon.cupping_hu * np.clip(1 - radius2, 0, 1))[None] * body
    if recon.streak_hu:
        # Streaks are as strong as the slice holds dense material (bone, excreted contrast).
        dense = (hu > 300).sum(axis=(1, 2)).astype(np.float32)
        weight = dense / max(float(dense.max()), 1.0)
        hu += weight[:, None, None] * _streak_pattern(rng, hu.shape[1:], recon.streak_hu)[None] * body
    grain = recon.noise_grain_px
    noise = ndimage.gaussian_filter(rng.standard_normal(hu.shape).astype(np.float32), (0, grain, grain))
    noise *= recon.noise_hu / max(float(noise.std()), 1e-6)
    return np.clip(hu + noise, HU_MIN, HU_MAX)
