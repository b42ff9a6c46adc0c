"""DPS and DAPS against recorded runs of their authors' released code (../shared/fixtures/reference-dps-daps/).

Each fixture holds the inputs, every noise draw of the run (int8 codes * 2^-5) and the trajectory. We replay the
draws in order through the samplers' public `noise=` keyword and compare every recorded tensor (relative L2 error
< 1e-4, the fixtures' tolerance; their README lists the algorithmic deviations, all far above it). Each file is
also run with a deliberately wrong rule, which must miss it: the tests can tell the releases apart.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spgd.errors import SpgdError
from spgd.samplers import make_sampler
from spgd.samplers.dps import DDPMSchedule, respaced_timesteps
from replay import fixture_network, Replay, rel

TOL = 1e-4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prior(shared_dir):
    return fixture_network(shared_dir)


@pytest.fixture(scope="module")
def ref_dir(shared_dir):
    return shared_dir / "fixtures" / "reference-dps-daps"


def load(ref_dir, name):
    return torch.load(ref_dir / f"{name}.pt", weights_only=True)


class ReleasedBlur:
    """The releases' Gaussian blur: ReflectionPad2d(k // 2), then a per-channel correlation."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.noise_sigma = 0.05

    def forward(self, x):
        p = self.kernel.shape[-1] // 2
        k = self.kernel[None, None].expand(x.shape[1], 1, -1, -1)
        return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), k, groups=x.shape[1])


class ReleasedInpainting:
    """A(x) = x * mask (the DPS code adds noise on every pixel, dropped ones included)."""

    def __init__(self, mask):
        self.mask = mask
        self.noise_sigma = 0.05

    def forward(self, x):
        return x * self.mask


def dps_draws(ref):
    return [ref["x_T"]] + [c.float() * ref["noise_scale"] for c in ref["noise"]]


def daps_draws(ref, z):
    out = [z]
    scale = ref["noise_scale"]
    for k in range(ref["renoise"].shape[0]):
        out += [c.float() * scale for c in ref["langevin_noise"][k]]
        out.append(ref["renoise"][k].float() * scale)
    return out


def run_dps(ref, prior, operator, **settings):
    s = ref["settings"]
    sampler = make_sampler("dps", steps=s["timestep_respacing"], lr=s["scale"], **settings)
    trace = []
    replay = Replay(dps_draws(ref))
    result = sampler.run(ref["y"], operator, prior, noise=replay, callback=lambda i: trace.append(i["x"]))
    return result, torch.stack(trace), replay


# --- DPS ---------------------------------------------------------------------------------------------------


def test_respacing_matches_the_released_schedule(ref_dir, prior):
    ref = load(ref_dir, "dps_gaussian_blur_learned_range")
    sched = DDPMSchedule.respaced(prior.ddpm_betas(), 50)
    assert sched.timesteps == ref["timesteps"].tolist()
    for ours, key in [(sched.abar, "alphas_cumprod"), (sched.abar_prev, "alphas_cumprod_prev"), (sched.beta, "betas"),
                      (sched.log_var_clipped, "posterior_log_variance_clipped")]:
        torch.testing.assert_close(torch.tensor(ours, dtype=torch.float64), ref[key], rtol=1e-12, atol=0)
    assert respaced_timesteps(1000, 1000) == list(range(1000))
    assert respaced_timesteps(1000, 1) == [0]


@pytest.mark.parametrize(
    "name, variance, wrong_variance",
    [
        ("dps_gaussian_blur_learned_range", "learned_range", "fixed_small"),
        ("dps_gaussian_blur_fixed_small", "fixed_small", "learned_range"),
        ("dps_inpainting_random_learned_range_scale0.05", "learned_range", "fixed_small"),
    ],
)
def test_dps_replays_the_released_run(ref_dir, prior, name, variance, wrong_variance):
    ref = load(ref_dir, name)
    op = ReleasedBlur(ref["kernel"]) if "kernel" in ref else ReleasedInpainting(ref["mask"])
    result, xt, replay = run_dps(ref, prior, op, variance=variance)
    assert replay.used == len(replay.draws)  # x_T and one draw per step but the last
    assert rel(result.x, ref["final"]) < TOL
    errors = [rel(xt[i], ref["xt"][i]) for i in range(len(ref["xt"]))]
    assert max(errors) < TOL, max(errors)
    assert result.stats.denoiser_calls == result.stats.vjps == 50
    # the other variance rule misses the file by orders of magnitude more than the tolerance
    wrong, _, _ = run_dps(ref, prior, op, variance=wrong_variance)
    assert rel(wrong.x, ref["final"]) > 100 * TOL


def test_dps_continuous_time_fallback_misses_the_released_run(ref_dir, prior):
    """A prior without integer timesteps gets x0_hat = D(x_t / sqrt(abar); sigma_t): with the same network
    behind `VPPrecond.denoise` (continuous time 999 t(sigma)) the result is measurably not the released one."""
    ref = load(ref_dir, "dps_gaussian_blur_fixed_small")
    s = ref["settings"]
    sampler = make_sampler("dps", steps=50, lr=s["scale"], variance="fixed_small")
    result = sampler.run(ref["y"], ReleasedBlur(ref["kernel"]), prior.denoise, noise=Replay(dps_draws(ref)))
    assert rel(result.x, ref["final"]) > 100 * TOL


# --- DAPS --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, name, other", [("daps", "daps2024_gaussian_blur", "daps2025_gaussian_blur"),
                                                 ("daps-2025", "daps2025_gaussian_blur", "daps2024_gaussian_blur")])
def test_daps_replays_the_released_run(ref_dir, prior, method, name, other):
    ref = load(ref_dir, name)
    z = load(ref_dir, "dps_gaussian_blur_learned_range")["x_T"]  # the same float32 z: x_start = 100 z
    s = ref["settings"]
    settings = dict(steps=s["K"], ode_steps=s["ode_steps"], langevin_steps=s["langevin_steps"], lr=s["lr"],
                    tau=s["tau"], lr_min_ratio=s["lr_min_ratio"], sigma_max=s["sigma_max"], sigma_min=s["sigma_min"],
                    ode_sigma_min=s["ode_sigma_min"])
    sampler = make_sampler(method, **settings)
    # the schedules (the 2025 release computes its sigmas in float32: 1e-6 relative apart from float64's)
    torch.testing.assert_close(torch.tensor(sampler.annealing_sigmas(), dtype=torch.float64), ref["annealing_sigmas"],
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(sampler.langevin_lrs(), dtype=torch.float64), ref["langevin_lr"],
                               rtol=1e-12, atol=0)
    for k in range(s["K"]):
        torch.testing.assert_close(torch.tensor(sampler.ode_sigmas(sampler.annealing_sigmas()[k]), dtype=torch.float64),
                                   ref["ode_sigmas"][k], rtol=1e-5, atol=0)

    trace = []
    replay = Replay(daps_draws(ref, z))
    result = sampler.run(ref["y"], ReleasedBlur(ref["kernel"]), prior, noise=replay, callback=trace.append)
    assert replay.used == len(replay.draws) == s["K"] * (s["langevin_steps"] + 1) + 1
    assert rel(result.x, ref["final"]) < TOL
    for key, ours in [("x0hat", "x0_hat"), ("x0y", "x0_y"), ("xt", "x")]:
        errors = [rel(t[ours], ref[key][k]) for k, t in enumerate(trace)]
        assert max(errors) < TOL, (key, max(errors))
    # every reported denoiser call was made and used; the Langevin steps are counted apart
    assert result.stats.denoiser_calls == s["network_calls"] == s["K"] * s["ode_steps"]
    assert result.stats.vjps == 0 and result.stats.operator_grads == s["K"] * s["langevin_steps"]
    # the other release's rules miss this file
    wrong = make_sampler("daps-2025" if method == "daps" else "daps", **settings)
    missed = wrong.run(ref["y"], ReleasedBlur(ref["kernel"]), prior, noise=Replay(daps_draws(ref, z)))
    assert rel(missed.x, ref["final"]) > 100 * TOL
    assert load(ref_dir, other)["settings"]["code"] != s["code"]


def test_noise_keyword_replaces_every_draw_and_checks_shapes():
    """`noise=` is the only source of randomness: the same draws give the same result whatever the generator."""

    def prior(x, sigma):
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)

    class Blur:
        noise_sigma = 0.05

        def forward(self, x):
            return F.avg_pool2d(x, 3, 1, 1)

    y = torch.randn(2, 3, 8, 8)
    for method, settings in [("dps", dict(steps=5)), ("daps", dict(steps=3, ode_steps=2, langevin_steps=2)),
                             ("spgd", dict(steps=3, warmup_steps=1))]:
        count = [0]

        def noise(shape, dtype, device):
            count[0] += 1
            return torch.ones(shape, dtype=dtype, device=device) * 0.1 * count[0]

        runs = []
        for seed in (0, 1):
            count[0] = 0
            runs.append(make_sampler(method, **settings).run(y, Blur(), prior, generator=torch.Generator().manual_seed(seed),
                                                             noise=noise).x)
        assert torch.equal(runs[0], runs[1]), method
        assert count[0] == {"dps": 5, "daps": 1 + 3 * 3, "spgd": 1}[method]
        with pytest.raises(SpgdError, match="expected shape"):
            make_sampler(method, **settings).run(y, Blur(), prior, noise=lambda s, d, dev: torch.zeros(1))
