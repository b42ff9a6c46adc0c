"""Divergence is caught before inf, per sample (spgd.samplers.base.FailureTracker), and settings that would make
a method ignore the measurement are refused."""

from __future__ import annotations

import pytest
import torch

from conftest import blur_problem, run_cli

from spgd.errors import SpgdError
from spgd.priors.gaussian import GaussianPrior
from spgd.samplers import make_sampler
from spgd.samplers.base import FailureTracker

run = run_cli


def test_finite_blow_up_is_divergence_for_that_sample_only():
    """A sample driven to 1e6 (finite) is reported; the other finishes exactly as it does alone."""
    prior, op, y = blur_problem(2)
    base = GaussianPrior()

    def poisoned(x, sigma):  # sample 1 (when present) is pushed to 1e6
        out = base.denoise(x, sigma)
        if x.shape[0] == 2:
            out = out + torch.tensor([0.0, 1e6]).view(2, 1, 1, 1)
        return out

    sampler = make_sampler("spgd", steps=6, warmup_steps=1, lr=1.0, check_every=2)
    gens = lambda n: [torch.Generator().manual_seed(10 + i) for i in range(n)]  # noqa: E731
    both = sampler.run(y, op, poisoned, generator=gens(2))
    alone = sampler.run(y[:1], op, poisoned, generator=gens(1))
    assert both.stats.failed == [False, True]
    assert torch.equal(both.x[0], alone.x[0])
    assert both.stats.failure_reason[1] and both.stats.failure_reason[0] is None


def test_tracker_flags_finite_values_far_outside_the_data_range():
    t = FailureTracker(3, "cpu", every=1)
    x = torch.stack([torch.zeros(4), torch.full((4,), 1e36), torch.full((4,), 500.0)])
    x = t.check(x, 0)
    assert t.alive.tolist() == [True, False, True]  # 1e36: diverged; 500: a noisy state, fine mid-run
    t.check(x, 1, last=True)
    assert t.alive.tolist() == [True, False, True]
    t2 = FailureTracker(1, "cpu", every=1)
    t2.check(torch.full((1, 4), 5000.0), 0, last=True)  # a *result* at 5000 is far outside [-1, 1]
    assert t2.alive.tolist() == [False]


def test_result_that_does_not_fit_the_measurement_is_divergence():
    prior, op, y = blur_problem(1)
    t = FailureTracker(1, "cpu", every=1)
    t.check_fit(y * 0 + 30.0, y, op, 0)  # in range of the RMS bound, but residual >> 1e3 x noise and >> 10 RMS(y)
    assert t.alive.tolist() == [False]
    t = FailureTracker(1, "cpu", every=1)
    t.check_fit(y, y, op, 0)  # a plausible result
    assert t.alive.tolist() == [True]


@pytest.mark.parametrize("method", ["daps", "dps"])
def test_baselines_report_a_result_far_outside_the_data_range(method):
    """DAPS with a prior that answers around +-1e4 (as a user's operator/prior can make it) returned such values
    with failed=[False]; the tracker's result bound now reports it, with no change to the sampler."""
    _, op, y = blur_problem(2)

    def wild(x, sigma):
        return 1e4 * torch.sign(torch.sin(torch.arange(x[0].numel()).view(x.shape[1:]).to(x) + 1.0)) + 0 * x

    settings = {"daps": {"steps": 3, "ode_steps": 1, "langevin_steps": 2}, "dps": {"steps": 3, "clip_denoised": False}}
    result = make_sampler(method, **settings[method]).run(y, op, wild, generator=torch.Generator().manual_seed(0))
    assert result.stats.failed == [True, True], result.x.abs().max()


@pytest.mark.parametrize("method,setting", [("spgd", {"warmup_steps": 0}), ("dps", {"lr": 0}),
                                            ("daps", {"langevin_steps": 0})])
def test_settings_that_ignore_the_measurement_are_refused(method, setting):
    with pytest.raises(SpgdError, match="measurement"):
        make_sampler(method, **setting)
