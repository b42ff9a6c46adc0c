"""The web app's work apart from its widgets (spgd.app.jobs): uploads checked in the page's words, requests
refused before any work, the pipelines' run folders and records read back, one run at a time; and Gradio
imported only when the app starts."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spgd.app.jobs import Job, Request, Server, check_kernel, check_mask, check_photo, drawn_mask, methods_for
from spgd.errors import SpgdError


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    return Server(out=tmp_path_factory.mktemp("app") / "runs").load()


@pytest.fixture
def small_face(tmp_path, demo_dir) -> Path:
    """A 36x28 face (not a multiple of 8: the restore mode pads it)."""
    Image.open(sorted(demo_dir.glob("*.png"))[1]).resize((36, 28)).save(tmp_path / "face.png")
    return tmp_path / "face.png"


def finish(job: Job) -> list:
    updates = list(job.updates())
    job.thread.join(60)
    return updates


def test_bad_uploads_get_one_line_naming_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    np.save(tmp_path / "k4d.npy", np.ones((3, 4, 5, 6)))
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "black.png")
    cases = [(lambda: check_photo(str(text), "degrade"), "notes.txt is not an image this app can read"),
             (lambda: check_kernel(str(text)), "notes.txt is not a blur kernel file"),
             (lambda: check_kernel(str(tmp_path / "k4d.npy")), "got shape (3, 4, 5, 6)"),
             (lambda: check_mask(str(tmp_path / "black.png")), "keeps no pixel"),
             (lambda: check_photo(None, "restore"), "no file was uploaded")]
    for call, fragment in cases:
        with pytest.raises(SpgdError) as e:
            call()
        message = str(e.value)
        assert fragment in message and "\n" not in message
        assert str(tmp_path) not in message  # the page names the file, not the server's folders


def test_requests_that_cannot_run_are_refused_in_the_pages_words(small_face):
    photo = str(small_face)
    cases = [(Request("degrade", None, "gaussian_blur", ["spgd"]), "upload a clean image first"),
             (Request("degrade", photo, "gaussian_blur", []), "tick at least one method"),
             (Request("restore", photo, "motion_blur", ["spgd"]), "upload the blur kernel"),
             (Request("restore", photo, "inpainting_box", ["spgd"]), "paint the missing pixels"),
             (Request("degrade", photo, "gaussian_blur", ["spgd"], samples=99), "samples must be between 1 and 8"),
             (Request("degrade", photo, "gaussian_blur", ["spgd"], settings="lr 2"), "each line is key=value")]
    for request, fragment in cases:
        with pytest.raises(SpgdError, match=fragment):
            request.check()


def test_methods_follow_the_task_and_the_library():
    from spgd.samplers import METHODS

    blur = [m for _, m in methods_for("gaussian_blur")]
    assert blur[0] == "spgd" and set(blur) <= set(METHODS) and "ddrm" in blur
    assert "ddrm" not in [m for _, m in methods_for("phase_retrieval")]  # no SVD of a nonlinear operator


def test_drawn_mask_is_the_painted_pixels_resized_to_the_photo():
    layer = np.zeros((20, 40, 4), np.uint8)
    layer[5:10, 10:20, 3] = 255
    assert drawn_mask({"layers": []}) is None and drawn_mask({"layers": [np.zeros((4, 4, 4), np.uint8)]}) is None
    m = drawn_mask({"layers": [layer]}, (10, 20))
    assert m.shape == (10, 20) and m[3, 7] and not m[0, 0] and not m[8, 15]
    assert 10 <= m.sum() <= 15  # 5x10 painted at half the size


def test_degrade_and_restore_scores_and_writes_the_eval_run_folder(server, small_face):
    job = Job(server, Request("degrade", str(small_face), "gaussian_blur", ["spgd", "classical"], steps=3,
                              size=64, samples=2, settings="kernel_size=9")).start()
    updates = finish(job)
    assert job.error is None, job.error
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(u.preview is not None and u.preview.shape[:2] == (48, 64) for u in updates)  # 36x28 at 64 wide
    o = job.outcome
    captions = [p.caption for p in o.pictures]
    assert captions[0] == "clean image (64x48)" and captions[1].startswith("measurement - PSNR")
    assert any(c.startswith("spgd - PSNR") for c in captions)
    assert "spgd: mean of 2 samples" in " ".join(captions) and "spgd: uncertainty (per-pixel std)" in captions
    assert all(Path(p.path).is_file() for p in o.pictures)
    assert Path(o.angles).is_file() and o.angles.endswith("angles.png")
    rows = {r["method"]: r for r in o.rows}
    assert rows["spgd"]["denoiser calls"] > 0 and rows["classical"]["denoiser calls"] == 0
    # every result judged against its measurement (spgd.verdict): the classical solve fits to the noise
    assert rows["classical"]["verdict"] == "ok"
    assert all(part == "ok" or part.startswith("under-fit") for part in rows["spgd"]["verdict"].split(", "))
    assert "| spgd |" in o.table()
    names = zipfile.ZipFile(o.zip).namelist()
    assert any(n.endswith("request.json") for n in names) and any("/records/" in n for n in names)
    assert json.loads((o.folder / "request.json").read_text())["methods"] == ["spgd", "classical"]


def test_restore_my_photo_with_a_painted_mask_any_size(server, small_face):
    painted = np.zeros((28, 36, 4), np.uint8)
    painted[8:16, 10:20, 3] = 255  # the brush's alpha
    job = Job(server, Request("restore", str(small_face), "inpainting_box", ["spgd", "classical"], steps=3,
                              painted=painted)).start()
    finish(job)
    assert job.error is None, job.error
    o = job.outcome
    mask = np.asarray(Image.open(o.folder / "inputs" / "mask.png")) > 127
    assert mask.shape == (28, 36) and (~mask).sum() == 8 * 10 and not mask[10, 12]
    restored = [p for p in o.pictures if p.caption.startswith(("spgd", "classical"))]
    assert len(restored) == 2 and all(Image.open(p.path).size == (36, 28) for p in restored)
    assert [r["method"] for r in o.rows] == ["spgd", "classical"]
    assert o.rows[1]["verdict"] == "ok"  # the painted box is no measurement: the solve fits the kept pixels
    assert any("padded to 40x32" in n for n in o.notes)
    assert Path(o.angles).is_file()


def test_one_run_at_a_time(server, small_face):
    first = Job(server, Request("degrade", str(small_face), "gaussian_blur", ["spgd"], steps=2, size=64,
                                     settings="kernel_size=9")).start()
    for update in first.updates():  # the first has the server: the second must wait for it
        break
    second = Job(server, Request("degrade", str(small_face), "gaussian_blur", ["classical"], size=64,
                                      settings="kernel_size=9")).start()
    waited = finish(second)
    assert first.outcome is not None or not first.thread.is_alive()
    assert "waiting for the run before this one" in waited[0].text
    finish(first)
    assert first.error is None and second.error is None
    assert second.outcome.folder != first.outcome.folder


def test_a_stopped_run_leaves_no_folder(server, small_face):
    before = set(server.out.iterdir()) if server.out.is_dir() else set()
    job = Job(server, Request("degrade", str(small_face), "gaussian_blur", ["spgd"], steps=50, size=64,
                              settings="kernel_size=9"))
    job.cancel()  # as the Stop button: the worker stops at its first level
    job.start()
    finish(job)
    assert type(job.error).__name__ == "Cancelled" and job.outcome is None
    assert set(server.out.iterdir()) == before


def test_gradio_is_imported_only_when_the_app_starts():
    code = "import sys, spgd, spgd.app, spgd.cli.main; print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_spgd_app_without_gradio_says_how_to_install_it(capsys, monkeypatch):
    from spgd import cli

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    code = cli.main(["app", "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "pip install 'spgd[app]'" in err and len(err.strip().splitlines()) == 1


def test_spgd_app_on_a_taken_port_says_so_in_one_line(capsys, tmp_path):
    import socket

    from spgd import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(["app", "--port", str(port), "--out", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"cannot serve on 127.0.0.1, port {port}: in use; choose another with --port N" in err
