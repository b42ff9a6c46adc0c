"""`spgd train` as a run folder: the weights (`TRAINED_WEIGHTS`), the training state (`TRAINING_STATE`),
settings.json through `runs.provenance` (as every command's run folder) and report.json (held-out PSNR).

The run folder is named by the caller, not made new under a parent as in the other commands: resuming must find
the checkpoint again, and `load_prior(RUN_DIR)` the weights. A folder that holds trained weights is only
continued (`resume=True`), never overwritten.

Python: ``train(TrainPlan("photos/", steps=2000), "my_prior")`` returns a :class:`TrainRecord`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import SpgdError
from ..priors.checkpoint import TRAINED_WEIGHTS
from ..training.loop import DEFAULT_CONFIG, train_prior
from .console import Console
from .runs import PathLike, RunLock, atomic_write_json, check_writable, provenance

TRAINING_STATE = "training-state.pt"  # the training state in the run folder (resuming continues from it)

# the defaults of the training settings are train_prior's (one home)
_DEFAULTS = {k: p.default for k, p in inspect.signature(train_prior).parameters.items()}


@dataclass
class TrainPlan:
    """What to train on and how: `spgd.training.train_prior`'s settings, the network's width and depth."""

    images_dir: PathLike
    steps: int = _DEFAULTS["steps"]  # optimizer steps in all (a resumed run continues up to this number)
    batch_size: int = _DEFAULTS["batch_size"]  # crops per step
    crop: int = _DEFAULTS["crop"]  # crop side, a multiple of the network's down-sampling
    lr: float = _DEFAULTS["lr"]  # Adam learning rate after the warm-up
    ema_decay: float = _DEFAULTS["ema_decay"]  # EMA of the weights (the saved network)
    channels: int = DEFAULT_CONFIG["num_channels"]  # UNet base width, a multiple of 32
    res_blocks: int = DEFAULT_CONFIG["num_res_blocks"]  # residual blocks per level
    seed: int = _DEFAULTS["seed"]  # initial weights, held-out split, crops, noise
    checkpoint_every: int = _DEFAULTS["checkpoint_every"]  # steps between checkpoints; 0: only at the end
    holdout_fraction: float = _DEFAULTS["holdout_fraction"]
    max_minutes: Optional[float] = _DEFAULTS["max_minutes"]  # stop after this much training time (this call)
    p_mean: float = _DEFAULTS["p_mean"]  # log-normal noise levels: ln sigma ~ N(p_mean, p_std^2)
    p_std: float = _DEFAULTS["p_std"]
    uniform_fraction: float = _DEFAULTS["uniform_fraction"]  # share of log-uniform noise levels per batch
    init: Optional[str] = _DEFAULTS["init"]  # spgd-unet weights to start from (their network config wins)
    scaling: Optional[str] = _DEFAULTS["scaling"]  # "edm" or "eps"; None: init's, else edm
    sigma_data: Optional[float] = _DEFAULTS["sigma_data"]  # None: init's, else 0.5
    image_channels: Optional[int] = _DEFAULTS["image_channels"]  # 1 or 3; None: init's, else from the data
    precision: str = _DEFAULTS["precision"]  # "bf16": the network under bf16 autocast
    save_dtype: str = _DEFAULTS["save_dtype"]  # storage of the saved weights: fp32, fp16
    device: Optional[str] = None
    resume: bool = False  # continue from the training state
    training_state: Optional[str] = None  # the training-state file (optimizer, EMA, step); None: RUN_DIR/TRAINING_STATE

    def __post_init__(self) -> None:  # as read back from settings.json
        self.images_dir = str(self.images_dir)

    def validate(self) -> None:
        """The network's width and depth (train_prior checks the rest)."""
        if self.channels < 32 or self.channels % 32:
            raise SpgdError(f"channels must be a positive multiple of 32 (GroupNorm uses 32 groups), got "
                            f"{self.channels}")
        if self.res_blocks < 1:
            raise SpgdError(f"res_blocks must be >= 1, got {self.res_blocks}")


@dataclass
class TrainRecord:
    """What training came to: train_prior's record (settings, steps, wall time, held-out report), the files."""

    meta: dict
    weights: Path
    training_state: Path


def train(plan: TrainPlan, run_dir: PathLike, console: Optional[Console] = None,
          argv: Optional[list[str]] = None) -> TrainRecord:
    """Train a prior on the plan's images into `run_dir` (a progress bar when the console shows status lines)."""
    con = console or Console()
    plan.validate()
    run_dir = Path(run_dir)
    weights = run_dir / TRAINED_WEIGHTS
    if weights.exists() and not plan.resume:
        raise SpgdError(f"{run_dir} already holds a trained prior ({weights}): continue it with resume=True, or "
                        "choose another run folder")
    state = Path(plan.training_state) if plan.training_state is not None else run_dir / TRAINING_STATE
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpgdError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
    with RunLock(run_dir, "train"):  # two trainings into one folder would overwrite each other's state
        return _train_locked(plan, run_dir, weights, state, con, argv)


def _train_locked(plan: TrainPlan, run_dir: Path, weights: Path, state: Path, con: Console,
                  argv: Optional[list[str]]) -> TrainRecord:
    check_writable(run_dir)
    config = {**DEFAULT_CONFIG, "num_channels": plan.channels, "num_res_blocks": plan.res_blocks}
    meta = train_prior(
        plan.images_dir, weights, resume=plan.resume, checkpoint=state, command=" ".join(argv or []),
        steps=plan.steps, batch_size=plan.batch_size, crop=plan.crop, lr=plan.lr, ema_decay=plan.ema_decay,
        config=config, seed=plan.seed, checkpoint_every=plan.checkpoint_every, device=plan.device,
        progress=con.level >= 1, holdout_fraction=plan.holdout_fraction, max_minutes=plan.max_minutes,
        p_mean=plan.p_mean, p_std=plan.p_std, uniform_fraction=plan.uniform_fraction, init=plan.init,
        scaling=plan.scaling, sigma_data=plan.sigma_data, image_channels=plan.image_channels,
        precision=plan.precision, save_dtype=plan.save_dtype,
    )
    provenance(run_dir, "train", plan, {"settings": meta["settings"], "data": meta["data"],
                                        "weights": TRAINED_WEIGHTS, "training_state": str(state)}, argv)
    atomic_write_json(run_dir / "report.json",
                      {"steps": meta["steps"], "wall_time_s": meta["wall_time_s"], **meta["report"]})
    return TrainRecord(meta, weights, state)
