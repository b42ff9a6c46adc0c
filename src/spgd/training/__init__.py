"""Training a small prior on a folder of images (`spgd train`): data, the loop, the held-out report."""

from .loop import (
    DEFAULT_CONFIG,
    SIGMA_HI,
    SIGMA_LO,
    denoising_report,
    format_report,
    random_crops,
    train_prior,
)

__all__ = ["DEFAULT_CONFIG", "SIGMA_HI", "SIGMA_LO", "denoising_report", "format_report", "random_crops",
           "train_prior"]
