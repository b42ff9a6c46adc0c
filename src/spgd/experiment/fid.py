"""`spgd fid`: FID and KID of two image folders (or cached statistics), and the caching of statistics.

    spgd fid restored/ clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth
    spgd fid clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth --save-stats clean.npz   # cache
    spgd fid restored/ clean.npz --fid-weights pt_inception-2015-12-05-6726825d.pth

An .npz argument is a statistics file (``mu``, ``sigma``; also pytorch-fid's ``--save-stats`` files and EDM's
``fid.py ref`` files); KID needs the features, which only files written here hold.
"""

from __future__ import annotations

import argparse
import json
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
from ..metrics.inception import FIDInception
from .console import Console

EXAMPLES = (
    "examples:\n"
    "  spgd fid restored/ clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth\n"
    "  spgd fid clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth --save-stats clean.npz\n"
    "  spgd fid restored/ clean.npz --fid-weights pt_inception-2015-12-05-6726825d.pth --json"
)




def _set_statistics(arg: str, model, batch_size: int, resize: str) -> tuple[dict, Optional[np.ndarray]]:
    """Statistics of one SET argument (a folder, or a statistics .npz file): (stats, features or None)."""
    p = Path(arg)
    if p.suffix == ".npz" and not p.is_dir():
        stats = load_statistics(p)
        if stats["resize"] is not None and stats["resize"] != resize:
            raise SpgdError(f"{p} holds features made with --resize {stats['resize']}, not {resize}")
        return stats, stats["features"]
    feats = folder_features(model, p, batch_size).double().numpy()
    mu, sigma = feature_statistics(feats)
    return {"mu": mu, "sigma": sigma, "n": feats.shape[0]}, feats


def run_fid(args: argparse.Namespace) -> int:
    """Run `spgd fid` with parsed arguments: the scores of two sets, or one set's statistics cached."""
    if len(args.sets) > 2:
        raise SpgdError(f"spgd fid takes one or two sets, got {len(args.sets)}: {' '.join(args.sets)}")
    if len(args.sets) == 1 and not args.save_stats:
        raise SpgdError("spgd fid with one set needs --save-stats OUT.npz (or give a second set to compare with)")
    if args.batch_size < 1:
        raise SpgdError(f"--batch-size must be >= 1, got {args.batch_size}")
    con = Console.of_flags(getattr(args, "quiet", False), getattr(args, "verbose", False))
    device = resolve_device(args.device)
    model = FIDInception(args.fid_weights, resize=args.resize).to(device)
    con.detail(f"fid: Inception-v3 from {args.fid_weights} on {device}, resize {args.resize}")
    with torch.no_grad():
        sets = [_set_statistics(a, model, args.batch_size, args.resize) for a in args.sets]
    for name, (stats, feats) in zip(args.sets, sets):
        con.detail(f"fid: {name}: {stats['n'] or '?'} image(s), {'features' if feats is not None else 'no features'}"
                   f"{' (statistics file)' if Path(name).suffix == '.npz' else ''}")
    if args.save_stats:
        last = args.sets[-1]
        if sets[-1][1] is None or Path(last).suffix == ".npz":
            raise SpgdError(f"--save-stats caches a folder's statistics; {last} is not a folder")
        save_statistics(args.save_stats, sets[-1][1], args.resize)
        print(f"statistics of {sets[-1][0]['n']} image(s) in {last} written to {args.save_stats}")
    if len(sets) == 1:
        return 0
    (a, fa), (b, fb) = sets
    out = {
        "fid": frechet_distance(a["mu"], a["sigma"], b["mu"], b["sigma"]),
        "kid": None if fa is None or fb is None else kid(fa, fb),
        "n_a": a["n"], "n_b": b["n"], "resize": args.resize,
        "warning": None if a["n"] is None or b["n"] is None else small_set_warning(a["n"], b["n"]),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_scores(out, args.sets)
    return 0


def _print_scores(out: dict, names: list[str]) -> None:
    """The scores of two sets as text lines (FID, KID or why not, a small-set note)."""
    print(f"FID {out['fid']:.4f} ({names[0]}: {out['n_a'] or '?'} image(s), {names[1]}: {out['n_b'] or '?'})")
    if out["kid"] is not None:
        k = out["kid"]
        print(f"KID {k['mean']:.6f} ± {k['std']:.6f} ({k['subsets']} subset(s))")
    else:
        print("KID not computed: a statistics file without features (write it with spgd fid --save-stats)")
    if out["warning"]:
        print(f"note: {out['warning']}")
