"""FID and KID of two image sets from their Inception features, and statistics files.

- Fréchet distance of N(mu1, S1) and N(mu2, S2) (Dowson & Landau 1982; FID: Heusel et al. 2017, arXiv
  1706.08500)::

      d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

  in float64; tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1 S2)), the eigenvalues of the product (real and
  non-negative in exact arithmetic, since S1 S2 is similar to S1^(1/2) S2 S1^(1/2)); as pytorch-fid does
  for scipy's sqrtm, an imaginary part above 1e-3 is an error, not silently dropped.
- KID (Binkowski et al. 2018, arXiv 1801.01401): the unbiased estimator of the squared MMD with the kernel
  k(a, b) = (a.b / d + 1)^3,

      MMD^2_u = sum_{i!=j} k(x_i, x_j) / (n(n-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / (nm)

  averaged over random subsets of ``subset_size`` (torch-fidelity's defaults: 100 subsets of 1000).
- Statistics files: ``.npz`` with ``mu`` and ``sigma`` (the layout of pytorch-fid ``--save-stats`` and EDM
  ``fid.py ref``, so their files load too) and, when written here, ``features`` (for KID), ``n`` and
  ``resize`` (the input handling of the features, see :mod:`spgd.metrics.inception`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from spgd.errors import SpgdError
from spgd.io import atomic_write

__all__ = [
    "frechet_distance", "feature_statistics", "fid_from_features", "kid", "whole_set_scores",
    "save_statistics", "load_statistics", "SMALL_SET", "folder_features", "batch_features", "fid_label",
    "small_set_warning", "list_images",
]

SMALL_SET = 2048  # fewer images than feature dimensions: a singular covariance, FID biased upward
IMAG_TOL = 1e-3  # pytorch-fid's tolerance on the imaginary part of sqrtm(S1 S2)

ArrayLike = Union[np.ndarray, Tensor]


def _f64(a: ArrayLike) -> Tensor:
    return torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a.detach().cpu()).to(torch.float64)


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike) -> float:
    """Fréchet distance d^2 of two Gaussians, computed in float64 (see the module docstring)."""
    m1, m2, s1, s2 = _f64(mu1).flatten(), _f64(mu2).flatten(), _f64(sigma1), _f64(sigma2)
    d = m1.numel()
    if m2.numel() != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise SpgdError(
            f"frechet_distance: means of {m1.numel()} and {m2.numel()} values and covariances of shapes "
            f"{tuple(s1.shape)}, {tuple(s2.shape)} do not match (need d, d, (d, d), (d, d))"
        )
    for name, t in (("mu1", m1), ("mu2", m2), ("sigma1", s1), ("sigma2", s2)):
        if not torch.isfinite(t).all():
            raise SpgdError(f"frechet_distance: {name} contains non-finite values")
    root = torch.linalg.eigvals(s1 @ s2).sqrt()  # principal square roots of the eigenvalues of S1 S2
    imag = float(root.imag.abs().max())
    if imag > IMAG_TOL:
        raise SpgdError(
            f"frechet_distance: the square root of the covariance product has an imaginary part of {imag:.3g} "
            f"(more than {IMAG_TOL:g}); the covariances are not positive semi-definite or badly conditioned"
        )
    tr_covmean = float(root.real.sum())
    return float((m1 - m2).square().sum()) + float(s1.trace()) + float(s2.trace()) - 2.0 * tr_covmean


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and unbiased covariance (d, d) of (N, d) features, in float64 (as np.cov, rowvar=False)."""
    f = _f64(features)
    if f.dim() != 2 or f.shape[0] < 2:
        raise SpgdError(f"FID: need features of shape (N >= 2, d), got {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu.numpy(), (c.T @ c / (f.shape[0] - 1)).numpy()


def fid_from_features(a: ArrayLike, b: ArrayLike) -> float:
    """FID of two feature sets (N_a, d) and (N_b, d)."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def _mmd2_unbiased(x: Tensor, y: Tensor, degree: int, gamma: float, coef0: float) -> float:
    kxx = (x @ x.T * gamma + coef0) ** degree
    kyy = (y @ y.T * gamma + coef0) ** degree
    kxy = (x @ y.T * gamma + coef0) ** degree
    n, m = x.shape[0], y.shape[0]
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(off_x + off_y - 2.0 * kxy.mean())


def kid(
    a: ArrayLike,
    b: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: Optional[float] = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> dict:
    """Kernel Inception Distance: the unbiased MMD^2 estimate, mean and std over random subsets.

    Each subset draws ``min(subset_size, N)`` features of each set without replacement (numpy
    RandomState(seed), as torch-fidelity). When both sets are no larger than ``subset_size``, the estimate
    of the whole sets is returned (one "subset", std 0). ``gamma`` defaults to 1 / d.

    Returns:
        ``{"mean", "std", "subsets", "subset_size"}``.
    """
    x, y = _f64(a), _f64(b)
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise SpgdError(f"KID: need features (N, d) and (M, d), got {tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[0], y.shape[0]) < 2:
        raise SpgdError(f"KID: need at least 2 images per set, got {x.shape[0]} and {y.shape[0]}")
    if subsets < 1 or subset_size < 2:
        raise SpgdError(f"KID: subsets must be >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    g = 1.0 / x.shape[1] if gamma is None else gamma
    if x.shape[0] <= subset_size and y.shape[0] <= subset_size:
        value = _mmd2_unbiased(x, y, degree, g, coef0)
        return {"mean": value, "std": 0.0, "subsets": 1, "subset_size": None}
    size = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        ix = torch.from_numpy(rng.choice(x.shape[0], size, replace=False))
        iy = torch.from_numpy(rng.choice(y.shape[0], size, replace=False))
        values.append(_mmd2_unbiased(x[ix], y[iy], degree, g, coef0))
    v = np.asarray(values)
    return {"mean": float(v.mean()), "std": float(v.std()), "subsets": subsets, "subset_size": size}


def small_set_warning(n: int, n_ref: int) -> Optional[str]:
    """The sentence a table prints when a set is too small for FID to mean much (None otherwise)."""
    low = min(n, n_ref)
    if low >= SMALL_SET:
        return None
    return (
        f"FID from {n} vs {n_ref} images: fewer than {SMALL_SET} (the feature dimension), so the covariances "
        "are singular and FID is biased upward; compare it only with FIDs from the same number of images "
        "(papers use 1k-50k); KID is unbiased but noisy at this size"
    )


def whole_set_scores(features: ArrayLike, ref_features: ArrayLike, resize: Optional[str] = None) -> dict:
    """FID and KID of one set against a reference set, for a table: ``{"fid", "kid", "n", "n_ref", ...}``."""
    f, r = _f64(features), _f64(ref_features)
    return {
        "fid": fid_from_features(f, r),
        "kid": kid(f, r),
        "n": int(f.shape[0]),
        "n_ref": int(r.shape[0]),
        "resize": resize,
        "warning": small_set_warning(int(f.shape[0]), int(r.shape[0])),
    }


def save_statistics(path: Union[str, Path], features: ArrayLike, resize: str) -> dict:
    """Write ``mu``, ``sigma``, ``features``, ``n`` and ``resize`` to ``path`` (.npz); returns them."""
    path = Path(path)
    if path.suffix != ".npz":
        raise SpgdError(f"statistics file must end in .npz, got {path}")
    f = _f64(features)
    mu, sigma = feature_statistics(f)
    out = {"mu": mu, "sigma": sigma, "features": f.numpy().astype(np.float32), "n": np.int64(f.shape[0]),
           "resize": np.str_(resize)}
    atomic_write(path, lambda fh: np.savez(fh, **out))
    return out


def load_statistics(path: Union[str, Path]) -> dict:
    """Read a statistics file: ``{"mu", "sigma", "features" (or None), "n" (or None), "resize" (or None)}``."""
    path = Path(path)
    if not path.is_file():
        raise SpgdError(f"statistics file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - a bad file
        raise SpgdError(f"cannot read {path} as an .npz statistics file ({type(e).__name__}: {e})") from None
    if "mu" not in data or "sigma" not in data:
        raise SpgdError(f"{path} lacks 'mu' or 'sigma' (has {', '.join(sorted(data)) or 'nothing'})")
    feats = data.get("features")
    return {
        "mu": data["mu"].astype(np.float64),
        "sigma": data["sigma"].astype(np.float64),
        "features": None if feats is None else feats.astype(np.float64),
        "n": int(data["n"]) if "n" in data else (None if feats is None else int(feats.shape[0])),
        "resize": str(data["resize"]) if "resize" in data else None,
    }


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: Union[str, Path]) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (SpgdError when there are none)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SpgdError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SpgdError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def _load_unit(path: Path) -> Tensor:
    """An image file as (1, 3, H, W) float32 in [0, 1]: 8-bit RGB / 255 (PIL convert('RGB'), as pytorch-fid)."""
    try:
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as e:
        raise SpgdError(f"cannot read image {path}: {e}") from None
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255.0


@torch.no_grad()
def batch_features(model: torch.nn.Module, images: Iterable[Tensor], batch_size: int = 16) -> Tensor:
    """Features (N, 2048) of (1, 3, H, W) [0, 1] images; consecutive images of one size share a batch."""
    dev = next(model.parameters()).device
    out, batch = [], []

    def flush() -> None:
        if batch:
            out.append(model(torch.cat(batch).to(dev)).cpu())
            batch.clear()

    for im in images:
        if batch and (len(batch) == batch_size or batch[-1].shape != im.shape):
            flush()
        batch.append(im)
    flush()
    return torch.cat(out) if out else torch.zeros(0, 2048)


def folder_features(model: torch.nn.Module, folder: Union[str, Path], batch_size: int = 16) -> Tensor:
    """Features (N, 2048) of every image file in ``folder`` (sorted by name)."""
    return batch_features(model, (_load_unit(p) for p in list_images(folder)), batch_size)


def fid_label(resize: str) -> str:
    """Column name: ``fid`` for pytorch-fid's input handling, ``fid-torch-fidelity`` for the other."""
    return "fid" if resize == "pytorch-fid" else f"fid-{resize}"
