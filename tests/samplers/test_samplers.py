"""The SPGD loop: schedule, ADM update, paper vs released behaviour, batching, failures, exactness on a
Gaussian model."""

import json
import math

import pytest
import torch

from spgd.errors import SpgdError
from spgd.priors.gaussian import GaussianPrior
from spgd.samplers import SPGD, adm_update, directional_cosine, karras_sigmas, linear_lr, make_sampler
from spgd.samplers.schedule import ve_euler_factors


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


class CircularBlur:
    """A user-brought operator (no spgd base class): circular Gaussian blur, diagonal in Fourier."""

    def __init__(self, h, w, std=2.0, noise_sigma=0.05):
        f2 = torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None] ** 2
        self.transfer = torch.exp(-2 * math.pi**2 * std**2 * f2).to(torch.complex64)
        self.noise_sigma = noise_sigma

    def forward(self, x):
        return torch.fft.ifft2(torch.fft.fft2(x) * self.transfer.to(x.device)).real

    def measure(self, x, generator=None):
        return self.forward(x) + self.noise_sigma * torch.randn(x.shape, generator=generator)


class Scale:
    """A toy linear operator on (B, D) vectors."""

    noise_sigma = 0.0

    def __init__(self, a):
        self.a = a

    def forward(self, x):
        return self.a * x

    def measure(self, x, generator=None):
        return self.forward(x)


def toy_prior(x, sigma):
    """Exact denoiser of x0 ~ N(0, I): x / (1 + sigma^2)."""
    return x / (1 + sigma.view(-1, *[1] * (x.ndim - 1)) ** 2)


# --- schedule -------------------------------------------------------------------------------------------


def test_schedule_matches_released_code(fixtures_dir):
    ref = json.loads((fixtures_dir / "schedule_reference.json").read_text())
    sig = karras_sigmas(ref["num_steps"], ref["sigma_max"], ref["sigma_min"], ref["rho"])
    assert sig.shape == (201,) and sig[-1] == 0
    assert rel(sig, torch.tensor(ref["sigma_steps"], dtype=torch.float64)) < 1e-12
    assert rel(ve_euler_factors(sig), torch.tensor(ref["factor_steps"], dtype=torch.float64)) < 1e-12
    lrs = linear_lr(ref["lr"], ref["lr_min_ratio"], ref["num_steps"])
    assert rel(lrs, torch.tensor(ref["lr_steps"], dtype=torch.float64)) < 1e-12


# --- adaptive directional momentum --------------------------------------------------------------------


def test_cosine_of_constructed_vectors():
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    m = torch.tensor([[0.0, 2.0], [-3.0, 0.0], [2.0, 2.0]])
    torch.testing.assert_close(directional_cosine(g, m), torch.tensor([0.0, -1.0, 1.0]))


def test_pixel_cosine_averages_channel_cosines():
    g = torch.zeros(1, 2, 1, 2)
    m = torch.zeros(1, 2, 1, 2)
    g[0, :, 0, 0], m[0, :, 0, 0] = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0])  # cos 1
    g[0, :, 0, 1], m[0, :, 0, 1] = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 5.0])  # cos 0
    assert directional_cosine(g, m, "pixel").item() == pytest.approx(0.5)
    assert directional_cosine(g, m, "sample").item() == pytest.approx(1 / math.sqrt(2 * 26), rel=1e-6)  # g=(1,1,0,0), m=(1,0,0,5)


def test_adm_alpha_in_unit_interval_and_limits():
    gen = torch.Generator().manual_seed(0)
    g, m = torch.randn(8, 3, 4, 4, generator=gen), torch.randn(8, 3, 4, 4, generator=gen)
    new, c, a = adm_update(m, g, beta=0.9)
    assert ((a >= 0) & (a <= 1)).all() and torch.allclose(a, (c + 1) / 2)
    # parallel gradient: alpha = 1, keeps beta of the history; opposite: alpha = 0, momentum is g itself
    new, _, a = adm_update(g, 2 * g, beta=0.9)
    torch.testing.assert_close(a, torch.ones(8))
    torch.testing.assert_close(new, 0.9 * g + 0.1 * 2 * g)
    new, _, a = adm_update(g, -g, beta=0.9)
    torch.testing.assert_close(a, torch.zeros(8))
    torch.testing.assert_close(new, -g)
    # beta = 0: the momentum is the raw gradient
    new, _, _ = adm_update(m, g, beta=0.0)
    torch.testing.assert_close(new, g)


def _warmup_trace(sampler, y, op, prior):
    """Per-level lists of (cosines, alphas) recorded through the callback."""
    trace = []
    sampler.run(y, op, prior, generator=torch.Generator().manual_seed(0), callback=lambda i: trace.append(i))
    return trace


def test_momentum_buffer_resets_every_level_and_m0_is_g0():
    # With a linear toy problem, the first warm-up step of every level moves x by exactly lr_k * g_0,
    # which can only hold if the buffer starts at m_0 = g_0 at every level.
    op = Scale(0.5)
    y = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    s = SPGD(steps=6, warmup_steps=3, lr=0.3, beta=0.9)
    states = []

    class Spy:
        sigma_min, sigma_max = 0.0, math.inf

        def denoise(self, x, sigma):
            states.append(x.detach().clone())
            return toy_prior(x, torch.as_tensor(sigma).expand(x.shape[0]))

    trace = _warmup_trace(s, y, op, Spy())
    assert len(trace) == 6
    for k, info in enumerate(trace):
        assert len(info["cosine"]) == 2 and len(info["alpha"]) == 2  # j = 1, 2 only: m_0 = g_0 has none
        x0 = states[4 * k]  # 3 warm-up calls + 1 fresh denoise per level
        x1 = states[4 * k + 1]
        sigma = info["sigma"]
        x0hat = x0 / (1 + sigma**2)
        g0 = 2 * op.a * (op.a * x0hat - y) / (1 + sigma**2)
        torch.testing.assert_close(x1, x0 - info["lr"] * g0)


def test_beta_zero_equals_plain_gradient_steps():
    prior = GaussianPrior.default()
    op = CircularBlur(16, 16, std=1.0, noise_sigma=0.05)
    x = prior.sample((2, 3, 16, 16), torch.Generator().manual_seed(0))
    y = op.measure(x, torch.Generator().manual_seed(1))
    a = make_sampler("spgd", steps=8, warmup_steps=3, lr=1.0, beta=0.0).run(y, op, prior, torch.Generator().manual_seed(2))
    b = make_sampler("spgd", steps=8, warmup_steps=3, lr=1.0, use_momentum=False).run(
        y, op, prior, torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(a.x, b.x)
    c = make_sampler("spgd", steps=8, warmup_steps=3, lr=1.0, beta=0.9).run(y, op, prior, torch.Generator().manual_seed(2))
    assert rel(c.x, a.x) > 1e-4  # and momentum does change the result


def test_spgd_and_official_differ_exactly_where_design_says():
    official = make_sampler("spgd-official")
    paper = make_sampler("spgd")
    diff = {k for k, v in official.settings().items() if paper.settings()[k] != v}
    assert diff == {"use_momentum", "fresh_denoise", "cosine"}
    # the released code's beta has no effect on its result
    prior = GaussianPrior.default()
    op = CircularBlur(16, 16, std=1.0)
    y = op.measure(prior.sample((1, 3, 16, 16), torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    r1 = make_sampler("spgd-official", steps=6, warmup_steps=3, beta=0.9).run(y, op, prior, torch.Generator().manual_seed(2))
    r2 = make_sampler("spgd-official", steps=6, warmup_steps=3, beta=0.1).run(y, op, prior, torch.Generator().manual_seed(2))
    torch.testing.assert_close(r1.x, r2.x)
    # and it costs one forward fewer per level
    assert r1.stats.denoiser_calls == 6 * 3 and r1.stats.vjps == 6 * 3
    r3 = make_sampler("spgd", steps=6, warmup_steps=3).run(y, op, prior, torch.Generator().manual_seed(2))
    assert r3.stats.denoiser_calls == 6 * 4 and r3.stats.vjps == 6 * 3


# --- batching, shapes, failures -------------------------------------------------------------------------


def test_same_result_alone_or_in_batch_with_per_sample_generators():
    prior = GaussianPrior.default()
    op = CircularBlur(16, 16, std=1.0)
    x = prior.sample((3, 3, 16, 16), torch.Generator().manual_seed(0))
    y = op.measure(x, torch.Generator().manual_seed(1))
    s = make_sampler("spgd", steps=10, warmup_steps=2, lr=1.0)
    batch = s.run(y, op, prior, generator=[torch.Generator().manual_seed(10 + i) for i in range(3)]).x
    for i in range(3):
        alone = s.run(y[i : i + 1], op, prior, generator=[torch.Generator().manual_seed(10 + i)]).x
        torch.testing.assert_close(alone[0], batch[i], rtol=1e-5, atol=1e-5)


def test_any_per_sample_shape():
    y = torch.randn(4, 7, generator=torch.Generator().manual_seed(0))
    r = make_sampler("spgd", steps=5, warmup_steps=2, lr=0.2).run(y, Scale(1.0), toy_prior)
    assert r.x.shape == (4, 7) and torch.isfinite(r.x).all()
    r = make_sampler("spgd-official", steps=5, warmup_steps=2, lr=0.2).run(y, Scale(1.0), toy_prior)
    assert r.x.shape == (4, 7) and torch.isfinite(r.x).all()


def test_diverging_sample_is_reported_and_others_finish():
    class Exploding:
        """Denoiser that blows up sample 1 only."""

        sigma_min, sigma_max = 0.0, math.inf

        def denoise(self, x, sigma):
            out = x / 2
            scale = torch.ones(x.shape[0], 1)
            scale[1] = float("inf")
            return out * scale

    y = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    r = make_sampler("spgd", steps=12, warmup_steps=2, lr=0.1, check_every=4).run(y, Scale(1.0), Exploding())
    assert r.stats.failed == [False, True, False]
    assert r.stats.failed_at_step[1] is not None and r.stats.failed_at_step[0] is None
    assert torch.isfinite(r.x).all()
    assert torch.isfinite(r.x[[0, 2]]).all() and r.x[[0, 2]].abs().sum() > 0


class RangedPrior:
    """The exact N(0, I) denoiser, trained (it says) for sigma in [0.5, 2]; records every sigma it is asked at."""

    sigma_min, sigma_max = 0.5, 2.0

    def __init__(self):
        self.asked = []

    def denoise(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1)
        self.asked += s.tolist()
        return x / (1 + s.view(-1, *[1] * (x.ndim - 1)) ** 2)


@pytest.mark.parametrize(
    "method, settings",
    [
        ("spgd", dict(steps=6, warmup_steps=1, lr=0.1)),
        ("spgd-official", dict(steps=6, warmup_steps=2, lr=0.1)),
        ("dps", dict(steps=6, lr=0.1)),  # no ddpm_betas: the continuous-time fallback
        ("daps", dict(steps=4, ode_steps=2, langevin_steps=1)),
    ],
)
def test_every_method_asks_the_prior_only_inside_its_sigma_range(method, settings):
    prior = RangedPrior()
    y = torch.full((2, 4), 0.3)
    result = make_sampler(method, **settings).run(y, Scale(1.0), prior, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(result.x).all()
    assert prior.asked and min(prior.asked) == 0.5 and max(prior.asked) == 2.0


def test_nonfinite_measurement_is_a_clear_error():
    y = torch.zeros(2, 3)
    y[1, 0] = float("nan")
    with pytest.raises(SpgdError, match=r"non-finite.*\[1\]"):
        make_sampler("spgd", steps=2).run(y, Scale(1.0), toy_prior)


def test_bad_settings_are_clear_errors():
    with pytest.raises(SpgdError, match="unknown method 'sgpd'.*spgd-official"):
        make_sampler("sgpd")
    with pytest.raises(SpgdError, match=r"unknown setting\(s\) \['learning_rate'\].*lr"):
        make_sampler("spgd", learning_rate=1.0)
    with pytest.raises(SpgdError, match="beta"):
        make_sampler("spgd", beta=1.5)
    with pytest.raises(SpgdError, match="cosine"):
        make_sampler("spgd", cosine="global")
    with pytest.raises(SpgdError, match="sigma_max"):
        make_sampler("spgd", sigma_max=0.01, sigma_min=0.1)


# --- exactness on a Gaussian model ----------------------------------------------------------------------


def test_spgd_lands_near_exact_posterior_mean_on_gaussian_prior():
    """For a Gaussian prior and a circular blur the posterior is Gaussian with a known mean m and covariance S.
    SPGD restorations behave like posterior samples, each ~sqrt(tr S) from m, so the average of M of them (same
    y, independent starts) must lie within ~sqrt(tr S / M) of m (measured: 1.01 for a bound unit of 1.00 at
    M = 32). We allow 1.5 sqrt(tr S / M). Returning the measurement, or the mean of a prior sample, misses by
    more than twice that bound (both asserted), so the test separates a working sampler from trivial ones."""
    torch.manual_seed(0)
    prior = GaussianPrior.default()
    h = w = 32
    op = CircularBlur(h, w, std=2.0, noise_sigma=0.05)
    x = prior.sample((1, 3, h, w), torch.Generator().manual_seed(1))
    y = op.measure(x, torch.Generator().manual_seed(2))
    m = prior.posterior_mean(y, op.transfer, op.noise_sigma)
    p = prior.spectrum(h, w)
    post_var = p * op.noise_sigma**2 / (op.transfer.abs().double() ** 2 * p + op.noise_sigma**2)
    tr_s = post_var.sum().item()  # orthonormal DFT and colour basis: the trace is basis-independent
    M = 32
    r = make_sampler("spgd", steps=100, warmup_steps=5, lr=3.0).run(
        y.expand(M, -1, -1, -1).contiguous(), op, prior, generator=torch.Generator().manual_seed(3)
    )
    assert not any(r.stats.failed)
    err_mean = (r.x.mean(0) - m[0]).norm().item()
    err_single = (r.x - m).flatten(1).norm(dim=1)
    bound = 1.5 * math.sqrt(tr_s / M)
    assert err_mean < bound, (err_mean, bound)
    assert (err_single < 1.5 * math.sqrt(tr_s)).all()
    assert (y - m).norm().item() > 2 * bound
    assert (x - m).norm().item() > 2 * bound


# --- every method: runs batched and per sample, improves on the measurement, counts its cost ---------------

SMALL = {
    "spgd": dict(steps=20, warmup_steps=3, lr=1.0),
    "spgd-official": dict(steps=20, warmup_steps=3, lr=1.0),
    "spgd-no-warmup": dict(steps=20, lr=1.0),
    "spgd-no-momentum": dict(steps=20, warmup_steps=3, lr=1.0),
    "dps": dict(steps=40, lr=1.0),
    "daps": dict(steps=15, ode_steps=2, langevin_steps=10),
    "daps-2025": dict(steps=15, ode_steps=2, langevin_steps=10),
    "classical": dict(iters=50),
}
# (denoiser forwards, VJPs) per image, as the loops define them
EXPECTED_COST = {
    "spgd": (20 * 4, 20 * 3),
    "spgd-official": (20 * 3, 20 * 3),
    "spgd-no-warmup": (20 * 2, 20 * 1),
    "spgd-no-momentum": (20 * 4, 20 * 3),
    "dps": (40, 40),
    "daps": (15 * 2, 0),
    "daps-2025": (15 * 2, 0),
    "classical": (0, 0),
}


@pytest.fixture(scope="module")
def inpainting_problem():
    from spgd.operators import make_operator

    prior = GaussianPrior.default()
    x = prior.sample((3, 3, 16, 16), torch.Generator().manual_seed(0)).clamp(-1, 1)
    op = make_operator("inpainting_random", drop=0.7, noise_sigma=0.01, seed=5)
    y = op.measure(x, torch.Generator().manual_seed(1))
    return prior, op, x, y


class CountingPrior:
    """Counts the batched forward calls the sampler really makes."""

    def __init__(self, prior):
        self.prior, self.calls = prior, 0
        self.sigma_min, self.sigma_max = prior.sigma_min, prior.sigma_max

    def denoise(self, x, sigma):
        self.calls += 1
        return self.prior.denoise(x, sigma)


@pytest.mark.parametrize("method", list(SMALL))
def test_every_method_batched_improves_and_counts(method, inpainting_problem):
    prior, op, x, y = inpainting_problem
    counting = CountingPrior(prior)
    gens = [torch.Generator().manual_seed(100 + i) for i in range(3)]
    r = make_sampler(method, **SMALL[method]).run(y, op, counting, generator=gens)
    assert r.x.shape == x.shape and torch.isfinite(r.x).all() and not any(r.stats.failed)
    # better than the measurement itself (70 % of pixels missing) for every image
    err = (r.x - x).flatten(1).norm(dim=1)
    err_y = (y - x).flatten(1).norm(dim=1)
    assert (err < 0.8 * err_y).all(), (err, err_y)
    # reported cost equals what the loop did
    assert (r.stats.denoiser_calls, r.stats.vjps) == EXPECTED_COST[method]
    assert counting.calls == r.stats.denoiser_calls
    assert r.stats.batch_size == 3 and r.stats.seconds > 0
    # per sample: the second image alone gives the same result as inside the batch
    op1 = type(op)(drop=0.7, noise_sigma=0.01, seed=6)
    alone = make_sampler(method, **SMALL[method]).run(y[1:2], op1, prior, generator=[torch.Generator().manual_seed(101)])
    torch.testing.assert_close(alone.x[0], r.x[1], rtol=1e-4, atol=1e-4)


def test_classical_tikhonov_solves_the_normal_equations():
    from spgd.operators import make_operator
    from spgd.operators.solvers import gradient_energy_grad

    op = make_operator("gaussian_blur", kernel_size=5, std=1.0, noise_sigma=0.0)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    y = op(x)
    s = make_sampler("classical", lam=1e-3, iters=500)
    r = s.run(y, op)
    # the normal equations hold at the solution (before the final clamp, which is inactive here)
    residual = op.adjoint(op(r.x) - y) + 1e-3 * gradient_energy_grad(r.x)
    assert residual.abs().max() < 1e-6
    with pytest.raises(SpgdError, match="linear operator"):
        s.run(y, make_operator("hdr"))


# --- parity with the authors' released code ---------------------------------------------------------------


def test_official_mode_reproduces_released_run(fixtures_dir):
    """`spgd-official` against `spgd_run_reference.pt` (K=8, N=3, Gaussian blur 9/1.5, small UNet).

    The released code updates its state tensor in place and records it without copying (on CPU `.cpu()` is
    the same tensor), so the fixture holds, for level k < 7, `xt[k]` = x^(N) of level k+1 (the next level's
    warm-up overwrote it), `x0hat[k]` = D(x^(N-1); sigma_k), and `final` = `xt[7]` = the output; the true
    start is lost. At the last levels the warm-up can be undone: x^(N-1) is the fixed point of
    x = x^(N) + lr_k * g(x), which converges there. From it we rebuild the state entering level 6 and run our
    sampler for levels 6..7, comparing every recorded tensor (relative error < 1e-4).
    """
    import torch.nn.functional as F

    from spgd.priors import UNetModel, VPPrecond

    u = torch.load(fixtures_dir / "unet_small_reference.pt", weights_only=True)
    net = UNetModel(**u["config"])
    net.load_state_dict(u["state_dict"])
    prior = VPPrecond(net)
    ref = torch.load(fixtures_dir / "spgd_run_reference.pt", weights_only=True)
    kernel, y = ref["kernel"], ref["y"]

    class ReferenceBlur:  # the released Gaussian blur: reflect padding, per-channel correlation
        noise_sigma = 0.01

        def forward(self, x):
            p = kernel.shape[-1] // 2
            return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), kernel[None, None].expand(3, 1, -1, -1), groups=3)

    op = ReferenceBlur()
    sampler = make_sampler("spgd-official", steps=8, warmup_steps=3, lr=1.0, lr_min_ratio=0.01, beta=0.9)
    sig = karras_sigmas(8, 100, 0.1, 7).tolist()
    lrs = linear_lr(1.0, 0.01, 8).tolist()
    assert rel(torch.tensor(sig[:8]), ref["sigma"].float()) < 1e-6

    def grad(x, s):
        x = x.detach().requires_grad_(True)
        loss = (op.forward(prior.denoise(x, s)) - y).pow(2).sum()
        return torch.autograd.grad(loss, x)[0]

    k = 5
    x_n = ref["xt"][k - 1]  # x^(3) of level 5
    x_prev = x_n.clone()
    for _ in range(20):  # undo the last warm-up step: x^(2) = x^(3) + lr_5 * g(x^(2))
        x_prev = x_n + lrs[k] * grad(x_prev, sig[k])
    assert rel(prior.denoise(x_prev, sig[k]), ref["x0hat"][k]) < 1e-4
    x_next = x_n + (1 - sig[k + 1] / sig[k]) * (prior.denoise(x_prev, sig[k]) - x_prev)

    trace = []
    result = sampler.run(y, op, prior, x_start=x_next, start_step=k + 1, callback=lambda i: trace.append(i))
    assert [i["step"] for i in trace] == [6, 7]
    assert rel(trace[0]["x_warm"], ref["xt"][5]) < 1e-4
    assert rel(trace[0]["x0_hat"], ref["x0hat"][6]) < 1e-4
    assert rel(trace[1]["x_warm"], ref["xt"][6]) < 1e-4
    assert rel(trace[1]["x0_hat"], ref["x0hat"][7]) < 1e-4
    assert rel(result.x, ref["final"]) < 1e-4
    assert rel(result.x, ref["xt"][7]) < 1e-4
    # and the paper's mode (momentum applied, fresh denoise) is measurably different from the same state
    paper = make_sampler("spgd", steps=8, warmup_steps=3, lr=1.0).run(y, op, prior, x_start=x_next, start_step=6)
    assert rel(paper.x, ref["final"]) > 10 * max(rel(result.x, ref["final"]), 1e-5)


def test_ablation_settings_cannot_be_overridden_by_presets():
    preset = dict(steps=10, warmup_steps=5, beta=0.9, lr=1.0)
    assert make_sampler("spgd-no-warmup", **preset).warmup_steps == 1
    assert make_sampler("spgd-no-momentum", **preset).beta == 0.0
    official = make_sampler("spgd-official", **preset, fresh_denoise=True)
    assert official.fresh_denoise is False and official.use_momentum is False


def test_classical_works_on_a_users_own_linear_operator():
    """No isinstance: an operator that is not ours, with only forward, adjoint and noise_sigma, gets the
    Tikhonov-CG estimate, the same as our blur's pseudo-inverse of the same measurement."""
    from spgd.operators import make_operator

    blur = make_operator("gaussian_blur", kernel_size=5, std=1.0, noise_sigma=0.0)

    class Mine:  # a user's operator: no base class, no pseudo_inverse
        noise_sigma = 0.0

        def forward(self, x):
            return blur.forward(x)

        def adjoint(self, y):
            return blur.adjoint(y)

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    y = blur(x)
    mine = make_sampler("classical").run(y, Mine(), None).x
    ours = make_sampler("classical").run(y, blur, None).x
    assert torch.equal(mine, ours)
    assert (mine - x).abs().mean() < (y - x).abs().mean()

    class NotLinear:
        noise_sigma = 0.0

        def forward(self, x):
            return x.abs()

    with pytest.raises(SpgdError, match="NotLinear"):
        make_sampler("classical").run(y, NotLinear(), None)
