"""Shared test fixtures: where the reference outputs and demo photos live."""

import os
from pathlib import Path

import pytest
import torch


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


# A tiny ADM UNet (2 levels, attention at the lower one, scale-shift norm, res-block resampling), shared by the
# network and benchmark tests.
TINY_UNET = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    learn_sigma=True,
    attention_resolutions="8",
    num_head_channels=16,
    use_scale_shift_norm=True,
    resblock_updown=True,
)


def copy_demo_images(demo_dir: Path, dest: Path, n: int) -> Path:
    """The first n demo faces copied into a fresh folder `dest` (tests may add or break files there)."""
    import shutil

    dest.mkdir(parents=True)
    for f in sorted(demo_dir.glob("*.png"))[:n]:
        shutil.copy(f, dest / f.name)
    return dest
