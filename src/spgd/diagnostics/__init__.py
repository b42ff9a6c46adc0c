"""Look inside a run: gradient-angle telemetry (through a sampler's callback) and its plots.

>>> from spgd.diagnostics import GradientTelemetry
>>> tel = GradientTelemetry(frame_every=5)
>>> result = sampler.run(y, operator, prior, callback=tel)   # doctest: +SKIP
>>> result.telemetry = tel; tel.summary()                     # doctest: +SKIP

Plots (`plot_angles`, `plot_loss`, `save_animation`) live in `spgd.diagnostics.plots` and import matplotlib
only when a plot is made; `spgd diagnose` is in `spgd.experiment.diagnose`.
"""

from .plots import plot_angles, plot_loss, save_animation
from .telemetry import GradientTelemetry, angle_deg, cosine_similarity

__all__ = ["GradientTelemetry", "angle_deg", "cosine_similarity", "plot_angles", "plot_loss", "save_animation"]
