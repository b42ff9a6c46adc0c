"""`spgd train` as a run folder: the weights (`TRAINED_WEIGHTS`), the training checkpoint (`TRAINING_STATE`),
settings.json through `runs.provenance` (as every command's run folder) and report.json (held-out PSNR).

`--out` names the run folder itself, not a parent of new folders as in the other commands: `--resume` must
find the checkpoint again, and `--prior RUN_DIR` the weights. A folder that holds trained weights is only
continued (`resume=True`), never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from ..errors import SpgdError
from ..priors.checkpoint import TRAINED_WEIGHTS
from ..training.loop import train_prior
from .runs import PathLike, atomic_write_json, provenance

TRAINING_STATE = "training-state.pt"  # the checkpoint in the run folder (--resume continues from it)


def train_run(images_dir: PathLike, run_dir: PathLike, *, resume: bool = False,
              checkpoint: Optional[PathLike] = None, argv: Optional[list[str]] = None,
              **training: Any) -> tuple[dict, Path, Path]:
    """Train a prior on `images_dir` into `run_dir` (`training`: the keywords of `spgd.training.train_prior`);
    returns (train_prior's record, weights file, checkpoint file)."""
    run_dir = Path(run_dir)
    weights = run_dir / TRAINED_WEIGHTS
    if weights.exists() and not resume:
        raise SpgdError(f"{run_dir} already holds a trained prior ({weights}): continue it with --resume, or "
                        "choose another --out")
    checkpoint = Path(checkpoint) if checkpoint is not None else run_dir / TRAINING_STATE
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = train_prior(images_dir, weights, resume=resume, checkpoint=checkpoint,
                       command=" ".join(argv or []), **training)
    atomic_write_json(run_dir / "settings.json", {
        "command": "train", **provenance(argv), "settings": meta["settings"], "data": meta["data"],
        "weights": TRAINED_WEIGHTS, "checkpoint": str(checkpoint),
    })
    atomic_write_json(run_dir / "report.json",
                      {"steps": meta["steps"], "wall_time_s": meta["wall_time_s"], **meta["report"]})
    return meta, weights, checkpoint
