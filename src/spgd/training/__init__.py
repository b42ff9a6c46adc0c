"""Training a small prior on a folder of images (`spgd train`): data, the loop, the held-out report."""

from .data import random_crops
from .loop import DEFAULT_CONFIG, SIGMA_HI, SIGMA_LO, train_prior
from .report import denoising_report, format_report

__all__ = ["DEFAULT_CONFIG", "SIGMA_HI", "SIGMA_LO", "denoising_report", "format_report", "random_crops",
           "train_prior"]
