"""Shared test fixtures: where the reference outputs and demo photos live."""

import os
from pathlib import Path

import pytest
import torch

# the tests fix their torch threads themselves (_few_threads below, OMP_NUM_THREADS in subprocesses): the CLI
# leaves them as they are instead of choosing by the machine's load (spgd.device.choose_threads)
os.environ.setdefault("SPGD_THREADS", "torch")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's shared folder: ../shared beside the repository, or $SPGD_SHARED."""
    env = os.environ.get("SPGD_SHARED")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared"
    if not path.is_dir():
        pytest.fail(f"shared folder not found at {path}; set SPGD_SHARED")
    return path


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "reference-spgd"


@pytest.fixture(scope="session")
def demo_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "ffhq-demo"


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)


@pytest.fixture
def one_torch_thread():
    """One torch thread for tests that time or train tiny networks: on a shared 2-core machine, two OpenMP
    threads can be many times slower (use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# the toy architecture of the network and benchmark tests (it lives in the package: gpu_run.sh's rehearsal
# uses it without pytest)
from spgd.experiment.bench import TINY_UNET  # noqa: E402


@pytest.fixture
def two_images(tmp_path: Path, demo_dir: Path) -> Path:
    """Two demo faces in a folder of their own."""
    return copy_demo_images(demo_dir, tmp_path / "images", 2)


def copy_demo_images(demo_dir: Path, dest: Path, n: int) -> Path:
    """The first n demo faces copied into a fresh folder `dest` (tests may add or break files there)."""
    import shutil

    dest.mkdir(parents=True)
    for f in sorted(demo_dir.glob("*.png"))[:n]:
        shutil.copy(f, dest / f.name)
    return dest


# Tests that start processes (torchrun), train networks, or run the bundled 256x256 prior end to end: marked
# `slow` here (new ones can use @pytest.mark.slow), so that `make test-quick` (pytest -m "not slow") skips them.
# `make test` still runs everything.
SLOW_TESTS = {
    "test_distributed.py": {"test_two_processes_equal_one", "test_a_dead_rank_loses_only_its_unfinished_images_and_resume_completes",
                            "test_an_error_on_one_rank_is_reported_by_rank_0_after_the_merge",
                            "test_an_error_before_the_work_stops_every_rank"},
    "test_training.py": {"test_train_writes_a_loadable_prior", "test_resume_continues_exactly", "test_cli_runs",
                         "test_init_starts_from_the_given_weights"},
    "test_cli.py": {"test_demo_runs"},
    "test_default_prior.py": {"test_shipped_weights_load_and_denoise_a_demo_face"},
    "test_bench.py": {"test_bf16_fast_path_same_results_default_prior", "test_compiled_network_traces_forward_and_vjp"},
    "test_diagnostics.py": {"test_run_diagnose_end_to_end"},
    "test_sweep.py": {"test_tiny_sweep_marks_divergence_and_resumes"},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if getattr(item, "originalname", None) in SLOW_TESTS.get(item.path.name, ()):  # doctests have none
            item.add_marker(pytest.mark.slow)


# The command line in-process, shared by the CLI and first-try tests.
CLI_TINY = ["--prior", "gaussian", "--set", "steps=3", "--set", "warmup_steps=1", "--size", "64", "--resize"]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`spgd ARGV...` through spgd.cli.main: (exit code, stdout, stderr)."""
    from spgd import cli

    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def cli_error_line(code: int, err: str, *fragments: str) -> str:
    """The one-line `spgd: error: ...` of a bad-input exit (status 2), checked to contain `fragments`."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("spgd: warning:")]
    assert len(lines) == 1 and lines[0].startswith("spgd: error: "), err
    for f in fragments:
        assert f in lines[0], (f, err)
    return lines[0]


def check_compile_failure_falls_back(prior, x, monkeypatch) -> None:
    """A torch.compile whose compiled function raises: the prior warns, turns compile off and returns what the
    eager network returns (on x's device)."""
    import warnings

    expected = prior.denoise(x, 1.0)

    def broken(*args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    prior.configure(compile=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = prior.denoise(x, 1.0)
    assert any("torch.compile of the denoiser failed" in str(w.message) for w in caught)
    torch.testing.assert_close(out, expected)
    assert prior.settings()["compile"] is False


def blur_problem(batch: int = 2, size: int = 16):
    """A small Gaussian-prior deblurring problem: (prior, operator, y)."""
    import spgd
    from spgd.priors.gaussian import GaussianPrior

    prior = GaussianPrior()
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0)
    x = prior.sample((batch, 3, size, size), torch.Generator().manual_seed(0))
    y = op.measure(x, torch.Generator().manual_seed(1))
    return prior, op, y


def no_run_folder(out: Path) -> bool:
    """Whether a command left no run folder under `out`."""
    return not out.exists() or not any(out.iterdir())
