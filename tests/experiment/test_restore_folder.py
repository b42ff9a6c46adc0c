"""`spgd restore` on a folder of degraded photos of different sizes, each with its own mask (--mask-dir, matched
by file stem): every result keeps its photo's size, and each photo is restored with its own mask."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

MAGENTA = (255, 0, 255)
# name: (width, height), the missing box (x0, y0, x1, y1); p2's size needs --pad (not a multiple of 8)
PHOTOS = {"p0": ((40, 24), (4, 4, 12, 12)), "p1": ((56, 40), (30, 10, 44, 24)), "p2": ((33, 47), (8, 30, 20, 42))}


@pytest.fixture
def folder(tmp_path: Path, demo_dir: Path) -> Path:
    """photos/ of three faces of different sizes, each with its missing box painted magenta; masks/ (white =
    kept) with the same stems, as .png for two and .npy for one."""
    faces = sorted(demo_dir.glob("*.png"))
    (tmp_path / "photos").mkdir()
    (tmp_path / "masks").mkdir()
    for i, (name, ((w, h), (x0, y0, x1, y1))) in enumerate(PHOTOS.items()):
        a = np.asarray(Image.open(faces[i]).convert("RGB").resize((w, h))).copy()
        kept = np.ones((h, w), bool)
        kept[y0:y1, x0:x1] = False
        a[~kept] = MAGENTA
        Image.fromarray(a).save(tmp_path / "photos" / f"{name}.png")
        if name == "p1":
            np.save(tmp_path / "masks" / f"{name}.npy", kept.astype(np.float32))
        else:
            Image.fromarray(kept.astype(np.uint8) * 255).save(tmp_path / "masks" / f"{name}.png")
    return tmp_path


def test_folder_of_sizes_each_with_its_own_mask(capsys, folder):
    code, out, err = run_cli(capsys, "restore", folder / "photos", "--task", "inpainting_box", "--method",
                             "classical", "--mask-dir", folder / "masks", "--pad", "--out", folder / "runs")
    assert code == 0, err
    (run_dir,) = (folder / "runs").iterdir()
    rows = {r["name"]: r for r in csv.DictReader(open(run_dir / "results.csv"))}
    assert sorted(rows) == sorted(PHOTOS)
    for name, ((w, h), (x0, y0, x1, y1)) in PHOTOS.items():
        restored = np.asarray(Image.open(run_dir / "restored" / f"{name}.png").convert("RGB")).astype(int)
        photo = np.asarray(Image.open(folder / "photos" / f"{name}.png").convert("RGB")).astype(int)
        assert restored.shape == (h, w, 3), name  # its own size, never resized
        assert (int(rows[name]["width"]), int(rows[name]["height"])) == (w, h)
        # its own mask: its box filled (no magenta left there), every other pixel kept as measured
        kept = np.ones((h, w), bool)
        kept[y0:y1, x0:x1] = False
        assert np.abs(restored - photo)[kept].max() <= 1, name
        box = restored[~kept]
        assert (np.abs(box - MAGENTA).sum(1) > 60).all(), f"{name}: its missing box was not filled"
        record = json.loads((run_dir / "records" / f"{name}.json").read_text())
        assert Path(record["operator"]["mask"]).stem == name
        assert record["operator"]["mask_kept_fraction"] == pytest.approx(kept.mean(), abs=1e-6)
        # the painted box is not a measurement: the residual counts the kept pixels only (the solve fits them)
        assert float(rows[name]["rms_residual"]) < 0.05, name
    assert rows["p2"]["padded_to"] == "40x48" and rows["p0"]["padded_to"] == "40x24"


@pytest.mark.slow
def test_folder_spgd_with_the_bundled_prior_uses_each_mask(capsys, folder):
    """The same with SPGD (a few levels): each result has its photo's size and its box inpainted."""
    code, out, err = run_cli(capsys, "restore", folder / "photos", "--task", "inpainting_box", "--mask-dir",
                             folder / "masks", "--pad", "--set", "steps=3", "--set", "warmup_steps=1",
                             "--out", folder / "runs")
    assert code == 0, err
    (run_dir,) = (folder / "runs").iterdir()
    for name, ((w, h), (x0, y0, x1, y1)) in PHOTOS.items():
        restored = np.asarray(Image.open(run_dir / "restored" / f"{name}.png").convert("RGB")).astype(int)
        assert restored.shape == (h, w, 3), name
        box = restored[y0:y1, x0:x1].reshape(-1, 3)
        assert (np.abs(box - MAGENTA).sum(1) > 60).mean() > 0.9, f"{name}: its missing box was not inpainted"
