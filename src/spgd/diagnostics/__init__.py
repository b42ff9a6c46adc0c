"""Look inside a run: gradient-angle telemetry (through a sampler's callback) and its plots.

>>> from spgd.diagnostics import GradientTelemetry
>>> tel = GradientTelemetry(frame_every=5)
>>> result = sampler.run(y, operator, prior, callback=tel)   # doctest: +SKIP
>>> result.telemetry = tel; tel.summary()                     # doctest: +SKIP

Plots (`plot_angles`, `plot_loss`, `save_animation`) live in `spgd.diagnostics.plots` and import matplotlib
only when called; `spgd diagnose` is in `spgd.experiment.diagnose`.
"""

from .telemetry import GradientTelemetry, angle_deg, cosine_similarity

__all__ = ["GradientTelemetry", "angle_deg", "cosine_similarity", "plot_angles", "plot_loss", "save_animation"]


def __getattr__(name: str):
    if name in ("plot_angles", "plot_loss", "save_animation"):
        from . import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'spgd.diagnostics' has no attribute {name!r}")
