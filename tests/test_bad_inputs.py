"""Issue 28's bad inputs, each one clear line (or SpgdError from Python), and the thread rule."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spgd
from conftest import cli_error_line, run_cli
from spgd.device import choose_threads
from spgd.experiment.measurement import load_measurement
from spgd.io import atomic_write, load_npy, load_torch_file
from spgd.operators.blur import load_kernel

RESTORE = ["--prior", "gaussian", "--set", "steps=2", "--set", "warmup_steps=1"]


@pytest.fixture
def face64(tmp_path: Path, demo_dir: Path) -> Path:
    path = tmp_path / "face64.png"
    Image.open(demo_dir / "00000.png").resize((64, 64)).save(path)
    return path


# ------------------------------------------------------------------------------------------------------
# files


def test_npy_of_objects_and_text_named_npy_are_one_line(tmp_path):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([[1, "a"], [None, 2]], dtype=object), allow_pickle=True)
    text = tmp_path / "text.npy"
    text.write_text("0 1 0\n1 4 1\n0 1 0\n")
    with pytest.raises(spgd.SpgdError, match=r"kernel file .*obj.npy holds Python objects \(dtype object\)"):
        load_npy(obj, "kernel")
    with pytest.raises(spgd.SpgdError, match=r"text.npy is not a NumPy .npy file"):
        load_kernel(text)


def test_cli_kernel_files(capsys, tmp_path, face64):
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([1, "a"], dtype=object), allow_pickle=True)
    three = tmp_path / "three.npy"
    np.save(three, np.ones((3, 9, 9), np.float32))
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "restore", face64, "--task", "gaussian_blur", *RESTORE, "--kernel", obj, "--out", out)
    cli_error_line(code, err, "obj.npy", "Python objects")
    code, _, err = run_cli(capsys, "restore", face64, "--task", "gaussian_blur", *RESTORE, "--kernel", three,
                           "--out", out)
    cli_error_line(code, err, "three.npy holds 3 kernels", "give a single (k, k) kernel")
    assert not out.exists()


def test_a_png_kernel_is_normalised_without_a_warning_and_an_array_warns(capsys, tmp_path, face64):
    png = tmp_path / "k.png"
    Image.fromarray((np.outer(np.hanning(9), np.hanning(9)) * 255).astype(np.uint8)).save(png)
    arr = tmp_path / "k.npy"
    np.save(arr, np.outer(np.hanning(9), np.hanning(9)))
    for kernel, warned in ((png, False), (arr, True)):
        code, _, err = run_cli(capsys, "restore", face64, "--task", "gaussian_blur", *RESTORE, "--kernel", kernel,
                               "--out", tmp_path / "runs", "-q")
        assert code in (0, 1), err
        assert ("does not sum to 1" in err or "not 1" in err) == warned, err


def test_a_channels_last_npy_measurement_is_read_as_such(tmp_path):
    hwc = tmp_path / "hwc.npy"
    np.save(hwc, np.zeros((64, 48, 3), np.float32))
    y, notes = load_measurement(str(hwc))
    assert tuple(y.shape) == (1, 3, 64, 48)
    assert any("channels last" in n for n in notes)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((5, 64, 48), np.float32))
    with pytest.raises(spgd.SpgdError, match=r"\(C, H, W\) or \(H, W, C\) with C = 1 or 3"):
        load_measurement(str(bad))


def test_torch_files_say_why_they_cannot_be_read(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "zeros.pt").write_bytes(b"\0" * 200)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(3)}, good)
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    for name, why in (("empty.pt", "it is empty"), ("zeros.pt", "not a file written by torch.save"),
                      ("cut.pt", "truncated or damaged"), ("missing.pt", "not found")):
        with pytest.raises(spgd.SpgdError, match=why):
            load_torch_file(tmp_path / name, "weights")


def test_a_full_disk_names_the_file(tmp_path):
    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "records" / "00000.json", full)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "records" / "00000.json")
    assert not list((tmp_path / "records").iterdir())  # no temporary file left behind


@pytest.mark.parametrize("args, kwargs, fragment", [
    ((None,), {}, "got None (NoneType)"),
    ((3,), {}, "got 3 (int)"),
    (("gaussian",), {"device": "foo"}, "unknown device 'foo'"),
])
def test_load_prior_bad_arguments_are_spgd_errors(args, kwargs, fragment):
    with pytest.raises(spgd.SpgdError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spgd.load_prior(*args, **kwargs)


# ------------------------------------------------------------------------------------------------------
# output checked before work


def test_restore_checks_its_out_before_sampling(capsys, tmp_path, face64, monkeypatch):
    import spgd.experiment.restore as restore_module

    def never(*a, **k):
        raise AssertionError("sampled before checking --out")

    monkeypatch.setattr(restore_module, "run_sampler", never)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    code, _, err = run_cli(capsys, "restore", face64, "--task", "gaussian_blur", *RESTORE, "--out", a_file / "sub")
    cli_error_line(code, err, "is a file, not a folder")


def test_restore_records_its_verdict(capsys, tmp_path, face64):
    from spgd.verdict import verdict_of_record

    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "restore", face64, "--task", "gaussian_blur", *RESTORE, "--out", out, "-q")
    assert code == 0, err
    settings = json.loads(next(out.glob("*/settings.json")).read_text())
    v = verdict_of_record(settings["resolved"])
    assert v is not None and v.status in ("ok", "under-fit") and v.residual > 0


def test_train_old_checkpoint_option_names_the_new_one(capsys, tmp_path, two_images):
    code, _, err = run_cli(capsys, "train", two_images, "--out", tmp_path / "t", "--steps", "1", "--checkpoint",
                           tmp_path / "s.pt")
    cli_error_line(code, err, "--training-state", "prior's weights")


def test_seconds_per_image_counts_every_sample(capsys, tmp_path, two_images):
    from conftest import CLI_TINY

    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "eval", two_images, "--task", "denoising", *CLI_TINY, "--samples", "3", "--limit",
                           "1", "--out", out, "-q")
    assert code == 0, err
    entry = json.loads(next(out.glob("*/records/00000.json")).read_text())["methods"]["spgd"]
    assert entry["seconds"] == pytest.approx(3 * entry["seconds_per_sample"])


# ------------------------------------------------------------------------------------------------------
# threads


def test_an_idle_machine_gets_every_core_without_a_word():
    t = choose_threads(env={}, cores=2, load=0.2, default=2)
    assert (t.threads, t.source, t.note) == (2, "auto", None)


def test_a_busy_machine_gets_fewer_threads_and_is_told():
    t = choose_threads(env={}, cores=2, load=3.1, default=2)
    assert t.threads == 1 and "busy" in t.note and "SPGD_THREADS" in t.note


def test_oversubscription_by_omp_num_threads_says_what_to_do():
    t = choose_threads(env={"OMP_NUM_THREADS": "2"}, cores=2, load=2.0, default=2)
    assert t.threads == 2 and "SPGD_THREADS=auto" in t.note
    assert choose_threads(env={"OMP_NUM_THREADS": "1"}, cores=2, load=1.0, default=1).note is None


def test_spgd_threads_chooses_and_a_bad_value_is_one_error():
    assert choose_threads(env={"SPGD_THREADS": "1"}, cores=2, load=0.0, default=2).threads == 1
    assert choose_threads(env={"SPGD_THREADS": "torch"}, cores=2, load=9.0, default=2).threads == 2
    with pytest.raises(spgd.SpgdError, match="SPGD_THREADS must be a positive integer"):
        choose_threads(env={"SPGD_THREADS": "many"}, cores=2, load=0.0, default=2)


def test_the_cli_says_when_it_uses_fewer_threads(capsys, monkeypatch):
    import spgd.cli.options as options

    monkeypatch.setenv("SPGD_THREADS", "auto")
    monkeypatch.setattr(options, "choose_threads", lambda: choose_threads(env={}, cores=2, load=3.0, default=2))
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli(capsys, "bench", "--device", "cpu", "--size", "0")
    finally:
        torch.set_num_threads(before)
    assert "the machine is busy (load average 3.0 on 2 core(s)): using 1 torch thread(s)" in err
