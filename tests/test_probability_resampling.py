"""The device resampler of class probabilities gives nnU-Net's export labels: the same linear
interpolation in plane and nearest along the low-resolution axis of an anisotropic volume, upwards
and downwards, and the first class on a tie."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

import renalnode.probability_resampling as resampling
from renalnode.probability_resampling import ProbabilityResampler, first_argmax

CASES = [  # shape in, shape out, spacing in, spacing out (nnU-Net's axis order)
    ((30, 40, 50), (77, 130, 160), (2.6, 2.5, 2.6), (1.0, 0.8, 0.8)),   # upsampled everywhere
    ((60, 40, 50), (31, 130, 160), (2.6, 2.5, 2.6), (5.0, 0.8, 0.8)),   # 5 mm slices: nearest along z
    ((60, 40, 50), (12, 130, 161), (2.6, 2.5, 2.6), (13.0, 0.8, 0.8)),  # thick slices, odd plane
    ((40, 60, 50), (80, 30, 100), (2.5, 2.6, 2.5), (1.25, 5.2, 1.25)),  # low resolution on the second axis
    ((20, 40, 50), (40, 80, 100), (1.0, 1.0, 1.0), (0.5, 0.5, 0.5)),    # isotropic: trilinear
    ((20, 40, 50), (20, 40, 50), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)),     # nothing to do
]


@pytest.mark.parametrize("shape_in, shape_out, spacing_in, spacing_out", CASES)
def test_labels_are_those_of_nnunet_export_resampling(shape_in, shape_out, spacing_in, spacing_out, monkeypatch):
    monkeypatch.setattr(resampling, "SLAB_BYTES", 4 * 7 * shape_out[1] * shape_out[2] * 4)  # 7-slice slabs
    probabilities = np.random.default_rng(0).random((4, *shape_in)).astype(np.float32)
    resampled = resample_data_or_seg_to_shape(probabilities, shape_out, spacing_in, spacing_out, is_seg=False,
                                              order=1, order_z=0, force_separate_z=None)
    offsets = np.array([0.0, 0.0, 0.1, 0.3], np.float32)
    labels, offset_labels = ProbabilityResampler(shape_in, shape_out, spacing_in, spacing_out,
                                                 torch.device("cpu")).argmax_each(
        torch.from_numpy(probabilities), [None, torch.from_numpy(offsets)])
    assert labels.dtype == np.uint8 and labels.shape == tuple(shape_out)
    # nnU-Net interpolates in float64, here in float32: a voxel whose two best classes are within
    # rounding may go either way.
    assert (labels == resampled.argmax(0)).mean() > 0.99999
    # A constant offset commutes with the interpolation: it is added to the interpolated values.
    offset_expected = (resampled + offsets[:, None, None, None]).argmax(0)
    assert (offset_labels == offset_expected).mean() > 0.99999
    assert (offset_labels == 3).sum() > (labels == 3).sum()


def test_first_argmax_takes_the_first_of_equal_classes():
    values = torch.tensor([[0.2, 0.5, 0.1], [0.5, 0.5, 0.1], [0.3, 0.0, 0.1]])
    assert first_argmax(values).tolist() == torch.argmax(values, 0).tolist() == [1, 0, 0]
