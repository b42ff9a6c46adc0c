"""Several restorations of one image (spgd.experiment.samples): running moments over the samples that did not
fail, and the files that show them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spgd.errors import SpgdError
from spgd.experiment.samples import UNCERTAINTY_VMAX, SampleMoments, sample_summary_paths, write_sample_summary


def test_sample_moments_skip_failed_samples():
    mom = SampleMoments()
    mom.add(torch.tensor([[1.0], [5.0]]), [True, True])
    mom.add(torch.tensor([[3.0], [float("nan")]]), [True, False])
    mean, std = mom.mean_std()
    assert mom.counts() == [2, 1]
    assert mean.tolist() == [[2.0], [5.0]] and std.tolist() == [[1.0], [0.0]]


def test_sample_moments_need_a_sample():
    with pytest.raises(SpgdError, match="no samples"):
        SampleMoments().mean_std()


def test_summary_files_and_their_scale(tmp_path):
    mean = torch.zeros(3, 8, 8)
    std = torch.full((3, 8, 8), 2 * UNCERTAINTY_VMAX)  # [-1, 1] units: VMAX and above is the brightest colour
    pixel_std = write_sample_summary(mean, std, tmp_path / "m.png", tmp_path / "u.png")
    assert pixel_std == pytest.approx(UNCERTAINTY_VMAX)
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (8, 8, 3)
    bright = np.asarray(Image.open(tmp_path / "u.png")).astype(int)
    assert (bright == bright[0, 0]).all() and bright[0, 0].sum() > 500  # one colour, the bright end


def test_summary_paths_never_collide_with_restorations():
    assert sample_summary_paths("spgd", "a", False) == ("mean/a.png", "uncertainty/a.png")
    assert sample_summary_paths("spgd", "a", True) == ("mean/spgd/a.png", "uncertainty/spgd/a.png")
