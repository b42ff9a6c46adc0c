"""How a network prior's network runs (spgd.priors.execution): reference mode, labels; the training loss."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_UNET

import spgd
from spgd.priors import GaussianPrior, UNetModel, VPPrecond
from spgd.priors.discrete import DiscreteSchedule, DiscreteTimePrior, betas_for
from spgd.priors.execution import apply_fast, execution_label, reference
from spgd.samplers.base import CostMeter, likelihood_grad

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_prior(**kwargs) -> VPPrecond:
    torch.manual_seed(0)
    net = UNetModel(**TINY_UNET)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised output convolutions would hide most of the network
            p.normal_(0.0, 0.02)
    return VPPrecond(net, **kwargs)


def blur_problem() -> tuple:
    op = spgd.make_operator("gaussian_blur", kernel_size=5, std=1.0)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return op, x, op.forward(torch.zeros_like(x))


def test_reference_mode_same_x_gradient_and_fills_parameter_gradients():
    prior = tiny_prior()
    op, x, y = blur_problem()
    params = list(prior.net.parameters())
    x0_fast, g_fast, loss_fast = likelihood_grad(prior, op, x, 2.0, y, CostMeter(x.device, 2))
    assert all(p.grad is None and not p.requires_grad for p in params)
    reference(prior)
    assert all(p.requires_grad for p in params)
    x0_ref, g_ref, loss_ref = likelihood_grad(prior, op, x, 2.0, y, CostMeter(x.device, 2))
    assert all(p.grad is not None for p in params) and sum(p.grad.abs().sum() for p in params) > 0
    torch.testing.assert_close(g_ref, g_fast, rtol=1e-6, atol=1e-7)  # the same x-gradient, more work
    torch.testing.assert_close(x0_ref, x0_fast, rtol=0, atol=0)
    torch.testing.assert_close(loss_ref, loss_fast, rtol=0, atol=0)
    apply_fast(prior, False)
    assert not any(p.requires_grad for p in params)


def test_reference_mode_parameter_gradients_are_the_full_backwards():
    """ReferenceBackward accumulates what loss.backward() through the plain network would."""
    prior = tiny_prior()
    op, x, y = blur_problem()
    prior.net.requires_grad_(True)  # the plain network with trainable weights: backward() fills .grad
    xg = x.clone().requires_grad_(True)
    (op.forward(prior.denoise(xg, 2.0)) - y).square().sum().backward()
    expected = [p.grad.clone() for p in prior.net.parameters()]
    prior.zero_grad(set_to_none=True)
    reference(prior)
    for _ in range(2):  # accumulates, as backward() does
        likelihood_grad(prior, op, x, 2.0, y, CostMeter(x.device, 2))
    for p, e in zip(prior.net.parameters(), expected):
        torch.testing.assert_close(p.grad, 2 * e, rtol=1e-5, atol=1e-7)


def test_reference_mode_without_graph_is_the_plain_forward():
    prior = tiny_prior()
    x = torch.randn(1, 3, 16, 16)
    expected = prior.denoise(x, 0.7)
    with torch.no_grad():
        out = reference(prior).denoise(x, 0.7)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert all(p.grad is None for p in prior.parameters())


def test_execution_labels():
    prior = tiny_prior()
    assert execution_label(prior) == "fp32 eager"
    assert execution_label(prior.configure(precision="bf16", compile=True, compile_mode="auto")) == "bf16 compiled auto"
    assert execution_label(reference(prior)) == "reference (fp32 eager, parameter gradients)"
    assert execution_label(GaussianPrior()) == "analytic"
    assert execution_label(lambda x, sigma: x) == "callable"


def test_execution_label_of_priors_that_run_their_own_network():
    """A discrete-time prior is a network run eagerly in float32 (it was once labelled 'analytic')."""

    class EpsNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)

        def forward(self, x, t):
            return self.conv(x)

    schedule = DiscreteSchedule(torch.cumprod(1 - betas_for("linear", 10), 0))
    assert execution_label(DiscreteTimePrior(EpsNet(), schedule)) == "fp32 eager"


@pytest.mark.parametrize("scaling", ["eps", "edm"])
def test_loss_is_edms_weighted_denoising_error(scaling: str):
    """VPPrecond.loss = mean of ((D(x0 + sigma n; sigma) - x0) / c_out)^2, bit for bit."""
    prior = tiny_prior(scaling=scaling, sigma_data=0.5)
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 3, 16, 16, generator=gen) * 2 - 1
    sigma = torch.tensor([0.01, 1.0, 80.0])
    noise = torch.randn(x0.shape, generator=gen)
    denoised = prior.denoise(x0 + sigma[:, None, None, None] * noise, sigma)
    c_out = prior.scalings(sigma)[1][:, None, None, None]
    assert torch.equal(prior.loss(x0, sigma, noise), ((denoised - x0) / c_out).square().mean())
