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
