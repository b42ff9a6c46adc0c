"""`spgd fid`: FID and KID of two image folders (or cached statistics), and the caching of statistics.

A set is a folder of images or an .npz statistics file (``mu``, ``sigma``; also pytorch-fid's ``--save-stats``
files and EDM's ``fid.py ref`` files); KID needs the features, which only files written here hold.

Python: ``fid(FidPlan(["restored/", "clean/"], "pt_inception-2015-12-05-6726825d.pth"))`` returns a
:class:`FidRecord` (no run folder: the scores are the result, a statistics file the only file written).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..device import resolve_device
from ..errors import SpgdError
from ..metrics.fid import (
    feature_statistics,
    folder_features,
    frechet_distance,
    kid,
    load_statistics,
    save_statistics,
    small_set_warning,
)
from ..metrics.inception import RESIZE_MODES, FIDInception
from .console import Console
from .runs import check_writable


@dataclass
class FidPlan:
    """Two sets to compare, or one set whose statistics to cache (`save_stats`)."""

    sets: list[str]  # SET_A [SET_B]: folders of images or .npz statistics files
    fid_weights: str  # pt_inception-2015-12-05-6726825d.pth (pytorch-fid / torch-fidelity)
    resize: str = "pytorch-fid"  # whose resizing to 299x299 and normalisation (RESIZE_MODES)
    save_stats: Optional[str] = None  # write the statistics (and features) of the last set, a folder, here
    batch_size: int = 16
    device: Optional[str] = None

    def validate(self) -> None:
        if not 1 <= len(self.sets) <= 2:
            raise SpgdError(f"fid takes one or two sets, got {len(self.sets)}: {' '.join(self.sets)}")
        if len(self.sets) == 1 and not self.save_stats:
            raise SpgdError("fid with one set needs save_stats=OUT.npz (or give a second set to compare with)")
        if self.batch_size < 1:
            raise SpgdError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.resize not in RESIZE_MODES:
            raise SpgdError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")


@dataclass
class FidRecord:
    """The scores of two sets (None with one set) and the statistics file written (None without save_stats)."""

    scores: Optional[dict]  # fid, kid (None without features), n_a, n_b, resize, warning
    saved: Optional[dict]  # {"path", "set", "n"}


def fid(plan: FidPlan, console: Optional[Console] = None) -> FidRecord:
    """The scores of two sets, or one set's statistics cached (or both: the last set's statistics are cached)."""
    con = console or Console()
    plan.validate()
    if plan.save_stats:  # where the statistics go, and that there are some to cache, before any work
        if not Path(plan.sets[-1]).is_dir():
            raise SpgdError(f"save_stats caches a folder's statistics; {plan.sets[-1]} is not a folder")
        check_writable(Path(plan.save_stats).parent, "save_stats")
    device = resolve_device(plan.device)
    model = FIDInception(plan.fid_weights, resize=plan.resize).to(device)
    con.detail(f"fid: Inception-v3 from {plan.fid_weights} on {device}, resize {plan.resize}")
    with torch.no_grad():
        sets = [_set_statistics(a, model, plan.batch_size, plan.resize) for a in plan.sets]
    for name, (stats, feats) in zip(plan.sets, sets):
        con.detail(f"fid: {name}: {stats['n'] or '?'} image(s), {'features' if feats is not None else 'no features'}"
                   f"{' (statistics file)' if Path(name).suffix == '.npz' else ''}")
    saved = None
    if plan.save_stats:
        last = plan.sets[-1]
        if sets[-1][1] is None or Path(last).suffix == ".npz":
            raise SpgdError(f"save_stats caches a folder's statistics; {last} is not a folder")
        save_statistics(plan.save_stats, sets[-1][1], plan.resize)
        saved = {"path": plan.save_stats, "set": last, "n": sets[-1][0]["n"]}
    if len(sets) == 1:
        return FidRecord(None, saved)
    (a, fa), (b, fb) = sets
    scores = {
        "fid": frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"]),
        "kid": None if fa is None or fb is None else kid(fa, fb),
        "n_a": a["n"], "n_b": b["n"], "resize": plan.resize,
        "warning": None if a["n"] is None or b["n"] is None else small_set_warning(a["n"], b["n"]),
    }
    return FidRecord(scores, saved)


def _set_statistics(arg: str, model, batch_size: int, resize: str) -> tuple[dict, Optional[np.ndarray]]:
    """Statistics of one set (a folder, or a statistics .npz file): (stats, features or None)."""
    p = Path(arg)
    if p.suffix == ".npz" and not p.is_dir():
        stats = load_statistics(p)
        if stats["resize"] is not None and stats["resize"] != resize:
            raise SpgdError(f"{p} holds features made with resize={stats['resize']}, not {resize}")
        return stats, stats["features"]
    feats = folder_features(model, p, batch_size).double().numpy()
    mu, sigma = feature_statistics(feats)
    return {"mu": mu, "sigma": sigma, "n": feats.shape[0]}, feats
