"""DiffPIR against recorded runs of its authors' released code (../shared/fixtures/reference-diffpir/).

Each fixture holds the inputs, every noise draw of the run (int8 codes * 2^-5), the release's tables and the
trajectory. We replay the draws in order through the public `noise=` keyword, with the library's operators and
their `prox`, and compare every recorded state (relative L2 error; the fixture README's tolerances: < 1e-4 for
inpainting, < 2e-3 on `final` and < 5e-3 per step for the FFT tasks, whose first data steps divide a cancelling
difference by rho ~ 1e-7 and so amplify float32 rounding ~1e6-fold). Each file is also run with deliberately wrong
rules (the README's "known deviations"), which must miss it.

Measured here (CPU, one thread): inpainting final 1.3e-6 (every xt <= 1.3e-6); deblur final 5.9e-4, worst xt
1.1e-3; SR final 6.5e-4, worst xt 1.1e-3. The release's own arithmetic order in [0, 1] units (a test-local copy of
its `data_solution`) gives 2e-4 on this machine: the floor is the network's and MKL's float order, not the units.
"""

from __future__ import annotations

import pytest
import torch

import spgd
from spgd.errors import SpgdError
from spgd.samplers import make_sampler, vp
from spgd.samplers.diffpir import DiffPIR, DiffPIRTables, quad_timesteps
from replay import fixture_network, Replay, rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILES = ("diffpir_inpainting_random", "diffpir_deblur_gaussian", "diffpir_sisr_x4")
#: (final, each xt) tolerances of the README
TOL = {"diffpir_inpainting_random": (1e-4, 1e-4), "diffpir_deblur_gaussian": (2e-3, 5e-3),
       "diffpir_sisr_x4": (2e-3, 5e-3)}


@pytest.fixture(scope="module")
def prior(shared_dir):
    return fixture_network(shared_dir)


@pytest.fixture(scope="module")
def ref_dir(shared_dir):
    return shared_dir / "fixtures" / "reference-diffpir"


def load(ref_dir, name):
    return torch.load(ref_dir / f"{name}.pt", weights_only=True)


def draws(ref, start=True):
    """z_start, then per step noise_eta[i], noise[i] (README "Noise order")."""
    scale = ref["noise_scale"]
    out = [ref["z_start"]] if start else []
    for i in range(ref["noise"].shape[0]):
        out += [ref["noise_eta"][i].float() * scale, ref["noise"][i].float() * scale]
    return out


class OpenCVStart:
    """The library's SR operator, with the release's start image: its OpenCV INTER_CUBIC up-sampling of y (stored
    as `x_up`, in [0, 1]) offered as the operator's up-sampling, which DiffPIR starts from when y is smaller than x.
    Everything else is the library operator's."""

    def __init__(self, op, x_up):
        self.op, self.x_up = op, x_up
        self.noise_sigma = op.noise_sigma

    def forward(self, x):
        return self.op.forward(x)

    def input_shape(self, y):
        return self.op.input_shape(y)

    def prox(self, z, y, rho):
        return self.op.prox(z, y, rho)

    def pseudo_inverse(self, y):
        return 2 * self.x_up - 1


def problem(ref, name):
    """(y in [-1, 1], the library operator) of a fixture. The release's blur and SR use its kernel as a convolution
    kernel (`p2o`: FFT of the kernel rolled to the origin); the library's kernels are correlation kernels (as
    F.conv2d), so the SR kernel, which is not symmetric (its peak is at (10, 10) of 25 x 25), is passed flipped.
    The Gaussian blur kernel is symmetric."""
    if name == "diffpir_inpainting_random":
        # y as the release has it: missing pixels are -1 (they only enter the start image)
        return ref["y"], spgd.make_operator("inpainting_random", mask=ref["mask"], noise_sigma=0.0)
    if name == "diffpir_deblur_gaussian":
        op = spgd.make_operator("blur", kernel=ref["kernel"], padding="circular", noise_sigma=0.1)
        return 2 * ref["y"] - 1, op
    op = spgd.make_operator("super_resolution", scale=4, kernel=ref["kernel"].flip(-2, -1), padding="circular",
                            noise_sigma=0.1)
    return 2 * ref["y"] - 1, OpenCVStart(op, ref["x_up"])


def run_file(ref, name, prior, **change):
    h = ref["hyper"]
    settings = dict(steps=h["iter_num"], lam=h["lambda_"], zeta=h["zeta"], eta=h["eta"])
    settings.update(change)
    y, op = problem(ref, name)
    trace, replay = [], Replay(draws(ref))
    result = make_sampler("diffpir", **settings).run(y, op, prior, noise=replay, callback=trace.append)
    return result, trace, replay


# --- the release's tables --------------------------------------------------------------------------------------


def test_tables_match_the_release(ref_dir, prior):
    ref = load(ref_dir, "diffpir_deblur_gaussian")
    tab = DiffPIRTables.from_betas(vp.training_betas(prior))
    assert torch.equal(tab.beta, ref["betas"])
    # a, b, r: numpy's correctly rounded square roots; the fixture's came from torch's MKL sqrt, which is one ulp off
    # in a fifth of the entries on its processor
    for ours, key in [(tab.a, "sqrt_alphas_cumprod"), (tab.b, "sqrt_1m_alphas_cumprod"),
                      (tab.r, "reduced_alpha_cumprod"), (tab.r, "sigma_ks")]:
        torch.testing.assert_close(ours, ref[key], rtol=3e-7, atol=0)
    torch.testing.assert_close(tab.c1, ref["gd_sqrt_recip_alphas_cumprod"], rtol=1e-14, atol=0)
    torch.testing.assert_close(tab.c2, ref["gd_sqrt_recipm1_alphas_cumprod"], rtol=1e-14, atol=0)
    assert torch.equal(tab.c1.float(), ref["gd_sqrt_recip_alphas_cumprod"].float())  # what multiplies x
    assert torch.equal(tab.c2.float(), ref["gd_sqrt_recipm1_alphas_cumprod"].float())
    for name in FILES:
        r = load(ref_dir, name)
        assert quad_timesteps(1000, r["hyper"]["iter_num"]) == r["t_i"].tolist() == r["t_net"].tolist()
        rho = tab.rho(r["hyper"]["lambda_"], r["hyper"]["sigma"])
        torch.testing.assert_close(rho, r["rhos"], rtol=1e-6, atol=0)
        torch.testing.assert_close(rho[r["t_i"][:-1]], r["rho_t"], rtol=1e-6, atol=0)
        # the re-noise coefficients, computed as the loop does
        t_next = r["t_i"][1:]
        torch.testing.assert_close(tab.a[t_next], r["coef_a"], rtol=3e-7, atol=0)
        torch.testing.assert_close(torch.sqrt(tab.b[t_next] ** 2), r["coef_b"], rtol=3e-7, atol=0)
        torch.testing.assert_close(r["hyper"]["zeta"] ** 0.5 * tab.b[t_next], r["coef_c"], rtol=3e-7, atol=0)
    # the README's step table, and t_y = argmin |r_t - 2 sigma_n| (2 sigma_n = the operator's noise_sigma)
    assert quad_timesteps(1000, 15) == [999, 732, 622, 537, 465, 402, 345, 292, 244, 198, 154, 113, 74, 36, 0]
    assert tab.nearest(0.1) == ref["t_y"] == 26
    assert tab.nearest(0.0) == load(ref_dir, "diffpir_inpainting_random")["t_y"] == 0


# --- replays ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_diffpir_replays_the_released_run(ref_dir, prior, name):
    ref = load(ref_dir, name)
    tol_final, tol_step = TOL[name]
    result, trace, replay = run_file(ref, name, prior)
    n = ref["hyper"]["iter_num"]
    assert replay.used == len(replay.draws) == 1 + 2 * (n - 1)  # z, then noise_eta[i], noise[i] per step
    assert len(trace) == n
    assert rel(trace[0]["x_level"], ref["x_T"]) < 1e-6  # the start image
    assert rel(result.x, ref["final"]) < tol_final
    errors = [rel(info["x"], ref["xt"][i]) for i, info in enumerate(trace)]
    assert max(errors) < tol_step, errors
    # x0_hat before and after the data step: the first steps' rounding is amplified by 1/rho (README: "compare x0
    # only loosely in the first steps")
    loose = 1e-4 if tol_step == 1e-4 else 5e-2
    for key, ours in [("x0_net", "x0_hat"), ("x0", "x0_y")]:
        errors = [rel(info[ours], ref[key][i]) for i, info in enumerate(trace)]
        assert max(errors) < loose, (key, errors)
        assert max(errors[n // 2:]) < tol_step, (key, errors)
    # n network calls (the last, at t = 0, discarded), n - 1 prox solves (+1 for SR's up-sampled start), no VJPs
    stats = result.stats
    assert stats.denoiser_calls == n and stats.vjps == 0 and stats.operator_grads == 0
    assert stats.operator_solves == n - 1 + (name == "diffpir_sisr_x4")
    assert torch.equal(trace[-1]["x"], trace[-2]["x"]) and torch.equal(result.x, trace[-1]["x"])

    # deliberately wrong rules (README "Known deviations") miss the file
    zeta = {"diffpir_deblur_gaussian": 0.35, "diffpir_inpainting_random": 0.9, "diffpir_sisr_x4": 0.3}[name]
    other_zeta, _, _ = run_file(ref, name, prior, zeta=zeta)
    assert rel(other_zeta.x, ref["final"]) > 1e-2
    # `final` taken as the t = 0 network x0_hat instead of discarding it
    assert rel(trace[-1]["x0_hat"], ref["final"]) > 10 * tol_final
    # lam x 4 (sigma in [-1, 1] units): misses the FFT files; the inpainting file does not pin lam (rho_t <= 1e-4)
    four_lam, _, _ = run_file(ref, name, prior, lam=4 * ref["hyper"]["lambda_"])
    if name == "diffpir_inpainting_random":
        assert rel(four_lam.x, ref["final"]) < 1e-4
    else:
        assert rel(four_lam.x, ref["final"]) > 1e-2


def test_sr_start_from_a_given_x_start_makes_no_start_draw(ref_dir, prior):
    """With x_start (here the release's x_T) there is no start draw: the replay begins with noise_eta[0]."""
    ref = load(ref_dir, "diffpir_sisr_x4")
    op = spgd.make_operator("super_resolution", scale=4, kernel=ref["kernel"].flip(-2, -1), padding="circular",
                            noise_sigma=0.1)
    replay = Replay(draws(ref, start=False))
    result = make_sampler("diffpir", steps=20, lam=2.0, zeta=0.25).run(2 * ref["y"] - 1, op, prior, noise=replay,
                                                                       x_start=ref["x_T"])
    assert replay.used == len(replay.draws) == 38
    assert rel(result.x, ref["final"]) < 2e-3
    assert result.stats.operator_solves == 19


# --- properties ------------------------------------------------------------------------------------------------


def test_same_result_alone_or_in_a_batch_with_per_sample_generators(ref_dir, prior):
    """Equal up to the network's batched-versus-single float order (its epsilon differs by ~1e-6 relative, which
    c1_999 ~ 157 amplifies in the first x0_hat). Checked on inpainting, whose data step is per pixel: the FFT tasks'
    first data steps amplify that a million-fold more, which says nothing about independence."""
    ref = load(ref_dir, "diffpir_inpainting_random")
    op = spgd.make_operator("inpainting_random", mask=ref["mask"], noise_sigma=0.02)
    y = torch.cat([ref["y"], ref["y"].flip(-1) * ref["mask"]])
    sampler = make_sampler("diffpir", steps=5, lam=1.0, zeta=0.5)
    batch = sampler.run(y, op, prior, generator=[torch.Generator().manual_seed(s) for s in (3, 4)]).x
    for i, seed in enumerate((3, 4)):
        alone = sampler.run(y[i : i + 1], op, prior, generator=torch.Generator().manual_seed(seed)).x
        assert rel(alone[0], batch[i]) < 2e-5
    assert rel(batch[0], batch[1]) > 1e-2


def test_gaussian_prior_without_timesteps_runs_and_counts():
    prior = spgd.load_prior("gaussian")
    assert not vp.has_timesteps(prior)
    op = spgd.make_operator("blur", kernel=spgd.operators.gaussian_kernel(5, 1.0), padding="circular",
                            noise_sigma=0.05)
    g = torch.Generator().manual_seed(0)
    x = prior.sample((2, 3, 16, 16), g)
    y = op.measure(x, g)
    infos = []
    result = make_sampler("diffpir", steps=10, lam=7.0, zeta=0.3).run(y, op, prior, generator=g, callback=infos.append)
    assert result.x.shape == x.shape and torch.isfinite(result.x).all()
    assert result.stats.denoiser_calls == 10 and result.stats.operator_solves == 9 and result.stats.vjps == 0
    assert not any(result.stats.failed)
    # the callback's decomposition: the last step moves nothing; sigma decreases to r_0
    assert torch.equal(infos[-1]["x_warm"], infos[-1]["x_level"]) and torch.equal(infos[-1]["x"], infos[-1]["x_level"])
    assert [i["sigma"] for i in infos] == sorted((i["sigma"] for i in infos), reverse=True)
    assert infos[-1]["sigma_next"] == 0.0 and infos[-1]["t"] == 0


def test_an_operator_without_prox_is_refused_in_one_line():
    class Mine:
        noise_sigma = 0.01

        def forward(self, x):
            return x[..., ::2, ::2]

    with pytest.raises(SpgdError, match="diffpir needs an operator with a data-proximal solve") as err:
        make_sampler("diffpir", steps=3).run(torch.zeros(1, 3, 8, 8), Mine(), spgd.load_prior("gaussian"))
    assert "\n" not in str(err.value)


def test_a_smaller_y_needs_an_up_sampling_or_x_start():
    class ProxOnly:
        noise_sigma = 0.01

        def forward(self, x):
            return x[..., ::2, ::2]

        def input_shape(self, y):
            return (*y.shape[:-2], 2 * y.shape[-2], 2 * y.shape[-1])

        def prox(self, z, y, rho):
            return z

    with pytest.raises(SpgdError, match="neither pseudo_inverse"):
        make_sampler("diffpir", steps=3).run(torch.zeros(1, 3, 8, 8), ProxOnly(), spgd.load_prior("gaussian"))
    out = make_sampler("diffpir", steps=3).run(torch.zeros(1, 3, 8, 8), ProxOnly(), spgd.load_prior("gaussian"),
                                               x_start=torch.zeros(1, 3, 16, 16))
    assert out.x.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("settings, message", [
    (dict(steps=1), "steps must be in"), (dict(steps=1001), "steps must be in"), (dict(lam=0.0), "lam must be"),
    (dict(zeta=1.5), "zeta must be in"), (dict(eta=-0.1), "eta must be in"), (dict(steps=2.5), "must be an integer"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(SpgdError, match=message):
        make_sampler("diffpir", **settings)


def test_registered_with_the_released_setting_names():
    assert isinstance(make_sampler("diffpir"), DiffPIR)
    names = spgd.samplers.setting_names("diffpir")
    assert names == ["steps", "lam", "zeta", "eta", "start", "check_every", "progress"]


def test_the_papers_start_is_pure_noise_and_the_release_start_uses_y():
    """start="noise" (Algorithm 1 of the paper) begins at x_T = z; start="y" (the release) at y noised to T - 1."""
    prior = spgd.load_prior("gaussian")
    op = spgd.make_operator("inpainting_random", drop=0.5, noise_sigma=0.0)
    y = op.forward(torch.full((1, 3, 8, 8), 0.5))
    z = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for start in ("noise", "y"):
        first = []
        make_sampler("diffpir", steps=3, start=start).run(
            y, op, prior, noise=lambda shape, dtype, device: z.clone(),
            callback=lambda info: first.append(info["x_level"]) if info["step"] == 0 else None)
        if start == "noise":
            assert torch.equal(first[0], z)
        else:
            assert not torch.equal(first[0], z) and (first[0] - z).abs().max() < 0.05  # y scaled by a_T / a_ty ~ 0.006
    with pytest.raises(SpgdError, match="start must be one of"):
        make_sampler("diffpir", start="zeros")
