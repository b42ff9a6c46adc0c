"""Image loading/saving, conversions with notes, folders and grids."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spgd import io as spgd_io
from spgd.errors import SpgdError
from spgd.io import from_unit, list_images, load_image, make_grid, save_image, to_unit


def _rgb(h: int = 12, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_unit_maps():
    x = torch.linspace(-1, 1, 5)
    assert torch.allclose(to_unit(x), torch.linspace(0, 1, 5))
    assert torch.allclose(from_unit(to_unit(x)), x)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_round_trip(tmp_path, ext):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / f"a{ext}", **({"lossless": True} if ext == ".webp" else {}))
    x, notes = load_image(tmp_path / f"a{ext}")
    assert x.shape == (1, 3, 12, 16) and x.dtype == torch.float32 and notes == []
    assert x.min() >= -1 and x.max() <= 1
    save_image(x, tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)
    save_image(x[0], tmp_path / "c.png")  # (C, H, W) works too
    y, _ = load_image(tmp_path / "c.png")
    assert torch.equal(x, y)


def test_jpeg_reads(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg", quality=95)
    x, notes = load_image(tmp_path / "a.jpg")
    assert x.shape == (1, 3, 12, 16) and notes == []


def test_save_clamps_rounds_and_is_atomic(tmp_path):
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 5.0, float("nan")]).view(1, 1, 1, 6)
    out = save_image(x, tmp_path / "sub" / "g.png")
    a = np.asarray(Image.open(out))
    assert a.tolist() == [[0, 0, 128, 255, 255, 0]]  # 127.5 -> 128 (round half to even)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["g.png"]  # no temp files left
    with pytest.raises(SpgdError, match="batch of 2"):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "x.png")
    with pytest.raises(SpgdError, match="C = 1 or 3"):
        save_image(torch.zeros(4, 4, 4), tmp_path / "x.png")


def test_greyscale(tmp_path):
    g = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    x, notes = load_image(tmp_path / "g.png")
    assert x.shape == (1, 3, 12, 16)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert torch.allclose(to_unit(x[0, 0]) * 255, torch.from_numpy(g).float(), atol=1e-4)
    assert any("greyscale" in n for n in notes)


def test_rgba_drops_alpha(tmp_path):
    a = np.concatenate([_rgb(), np.full((12, 16, 1), 7, np.uint8)], axis=2)
    Image.fromarray(a, mode="RGBA").save(tmp_path / "a.png")
    x, notes = load_image(tmp_path / "a.png")
    assert x.shape == (1, 3, 12, 16)
    assert torch.allclose(to_unit(x[0]).permute(1, 2, 0) * 255, torch.from_numpy(a[..., :3]).float(), atol=1e-4)
    assert any("alpha" in n for n in notes)


def test_16bit_full_precision(tmp_path):
    v = np.array([[0, 1, 257, 65535], [1000, 30000, 40000, 65534]], dtype=np.uint16)
    Image.fromarray(v).save(tmp_path / "d.png")
    x, notes = load_image(tmp_path / "d.png")
    assert x.shape == (1, 3, 2, 4)
    expected = torch.from_numpy(v.astype(np.float64) / 65535).float()
    assert torch.allclose(to_unit(x[0, 0]), expected, atol=1e-6)
    assert x[0, 0, 0, 1] > x[0, 0, 0, 0]  # one 16-bit step survives (lost in 8 bits)
    assert any("16-bit" in n for n in notes)


def test_palette(tmp_path):
    img = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    img.save(tmp_path / "p.png")
    x, notes = load_image(tmp_path / "p.png")
    expected = np.array(img.convert("RGB"))
    assert torch.allclose(to_unit(x[0]).permute(1, 2, 0) * 255, torch.from_numpy(expected).float(), atol=1e-4)
    assert any("palette" in n for n in notes)


def test_size_check_and_resize(tmp_path):
    Image.fromarray(_rgb(20, 30)).save(tmp_path / "r.png")
    with pytest.raises(SpgdError, match=r"is 30x20.*needs 16x16.*resize=True"):
        load_image(tmp_path / "r.png", size=16)
    x, notes = load_image(tmp_path / "r.png", size=16, resize=True)
    assert x.shape == (1, 3, 16, 16) and x.min() >= -1 and x.max() <= 1
    assert any("center-cropped 30x20 to 20x20" in n and "resized to 16x16" in n for n in notes)
    # crop only (no resampling) when the short side already fits: exactly the central pixels
    full, _ = load_image(tmp_path / "r.png")
    x, notes = load_image(tmp_path / "r.png", size=20, resize=True)
    assert torch.equal(x, full[..., :, 5:25]) and notes == ["center-cropped 30x20 to 20x20"]
    # right size: nothing happens
    x, notes = load_image(tmp_path / "r.png", size=(20, 30))
    assert torch.equal(x, full) and notes == []


def test_bad_files(tmp_path):
    with pytest.raises(SpgdError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(SpgdError, match="cannot read"):
        load_image(tmp_path / "junk.png")
    Image.fromarray(_rgb()).save(tmp_path / "t.png")
    (tmp_path / "trunc.png").write_bytes((tmp_path / "t.png").read_bytes()[:60])
    with pytest.raises(SpgdError, match="cannot read"):
        load_image(tmp_path / "trunc.png")
    with pytest.raises(SpgdError, match="not a file"):
        load_image(tmp_path)


def test_list_images(tmp_path):
    with pytest.raises(SpgdError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(SpgdError, match="not a folder"):
        list_images(tmp_path / "f.txt")
    with pytest.raises(SpgdError, match="no image files"):
        list_images(tmp_path)
    for name in ["b.PNG", "a.jpg", ".hidden.png", "c.webp"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "d.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.webp"]


def test_grid_sizes_and_labels():
    gt = torch.rand(3, 32, 32) * 2 - 1
    small = torch.rand(1, 3, 8, 8) * 2 - 1  # an SR measurement
    big = torch.rand(3, 48, 48) * 2 - 1  # a phase-retrieval amplitude
    mask = torch.ones(1, 32, 32)
    grid = make_grid([[gt, small, big, mask], [gt, None]], pad=2)
    assert grid.size == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2)
    a = np.asarray(grid)
    # the SR measurement is upsampled with nearest neighbours: 4x4 blocks of one colour
    cell = a[2 : 2 + 32, 36 : 36 + 32]
    assert (cell[:4, :4] == cell[0, 0]).all()
    # the grey mask is shown as white on 3 channels
    assert (a[2 : 2 + 32, 2 + 3 * 34 : 2 + 3 * 34 + 32] == 255).all()
    # first cell is the image itself
    expected = torch.round(to_unit(gt).clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(a[2:34, 2:34], expected)
    labelled = make_grid([[gt, small]], labels=["ground truth", "measurement"])
    assert labelled.size[0] == 2 * 32 + 3 * 2 and labelled.size[1] > 32 + 2 * 2
    top = np.asarray(labelled)[:10]
    assert (top < 128).any()  # some text was drawn
    with pytest.raises(SpgdError):
        make_grid([])
    with pytest.raises(SpgdError, match="labels"):
        make_grid([[gt]], labels=["a", "b"])


def write_png16_rgb(path: Path, h: int, w: int) -> None:
    import struct
    import zlib

    import numpy as np

    a = (np.random.default_rng(0).integers(0, 65535, (h, w, 3))).astype(">u2")
    raw = b"".join(b"\x00" + a[i].tobytes() for i in range(h))

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16_bit_rgb_png_is_noted(tmp_path):
    write_png16_rgb(tmp_path / "a.png", 8, 8)
    _, notes = spgd_io.load_image(tmp_path / "a.png")
    assert any("16-bit" in n for n in notes), notes


def test_result_files_honour_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        spgd_io.save_image(torch.zeros(3, 4, 4), tmp_path / "a.png")
    finally:
        os.umask(old)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
