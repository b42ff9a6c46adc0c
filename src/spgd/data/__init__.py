"""Data shipped with spgd: the demo photo (`spgd demo`, the benchmark's quality check)."""

from pathlib import Path

# a crop of scikit-image's `astronaut`, a NASA photograph in the public domain
DEMO_IMAGE = Path(__file__).resolve().parent / "astronaut.png"
