"""DDRM against recorded runs of its authors' released code (../shared/fixtures/reference-ddrm/).

Each fixture holds the inputs, every spectral noise draw of the run (int8 codes * 2^-5, three per step: C, A, B)
and the trajectory (`xs`, `x0_preds`). We replay the draws in order through the public `noise=` keyword, starting
from the recorded z (`x_T`, the run's first draw, which DDRM's rule 0 turns into the first state), and compare every
recorded tensor (relative L2 error < 1e-4, the fixtures' tolerance). Each file is also run with the README's known
deviations (eta = 0.5, eta_b = 0.85), which must miss it by > 1e-2.
"""

from __future__ import annotations

import pytest
import torch

import spgd
from spgd.errors import SpgdError
from spgd.samplers import make_sampler
from spgd.samplers.ddrm import DDRM, alphas_cumprod_ext, released_timesteps
from replay import fixture_network, Replay, rel

TOL = 1e-4
MISS = 1e-2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prior(shared_dir):
    return fixture_network(shared_dir)


@pytest.fixture(scope="module")
def ref_dir(shared_dir):
    return shared_dir / "fixtures" / "reference-ddrm"


def load(ref_dir, name):
    return torch.load(ref_dir / f"ddrm_{name}.pt", weights_only=True)


def recorded_draws(ref):
    """The spectral draws of the tape, C0, A0, B0, C1, ... (README "How the noise is supplied")."""
    out = []
    for k in range(len(ref["noise_offsets"])):
        start, numel = int(ref["noise_offsets"][k]), int(ref["noise_numel"][k])
        code = ref["noise"][start : start + numel]
        out.append((code.to(torch.float32) * ref["noise_scale"]).view(*ref["noise_shapes"][k].tolist()))
    return out


class ReleasedDeblur:
    """The release's `Deblurring` H-function for `deblur_gauss`, from the stored bases (README "Deblurring"):
    T_c = V_small^T X_c V_small, spectral entry 3k + c = T_c[perm[k]] (channels interleaved), U likewise with
    U_small, and the singular values as stored (tiled, not interleaved: so A is not the separable blur)."""

    def __init__(self, ref, noise_sigma=0.05):
        self.U_small, self.V_small = ref["U_small"], ref["V_small"]
        self.s, self.perm = ref["singulars"], ref["perm"]
        self.noise_sigma = noise_sigma

    def _to_spectral(self, M, x):
        n = x.shape[0]
        M, perm = M.to(x), self.perm.to(x.device)
        t = (M.T @ x.reshape(n, 3, 64, 64) @ M).reshape(n, 3, -1)
        return t[:, :, perm].transpose(1, 2).reshape(n, -1)

    def _from_spectral(self, M, v):
        n = v.shape[0]
        M, perm = M.to(v), self.perm.to(v.device)
        t = torch.empty(n, 3, 4096, dtype=v.dtype, device=v.device)
        t[:, :, perm] = v.reshape(n, 4096, 3).transpose(1, 2)
        return M @ t.reshape(n, 3, 64, 64) @ M.T

    # the SVD (spgd.operators.capabilities.SVD): the operator is its own decomposition
    def singulars(self):
        return self.s

    def Vt(self, x):
        return self._to_spectral(self.V_small, x)

    def V(self, v):
        return self._from_spectral(self.V_small, v)

    def Ut(self, y):
        return self._to_spectral(self.U_small, y)

    def U(self, u):
        return self._from_spectral(self.U_small, u)

    def svd(self, x_shape):
        return self

    def forward(self, x):
        return self.U(self.s.to(x) * self.Vt(x))


def fixture_operator(name, ref):
    if name == "inpainting_random":
        return spgd.make_operator("inpainting_random", mask=ref["mask"], noise_sigma=ref["sigma_0"])
    if name == "super_resolution_x4":
        return spgd.make_operator("super_resolution", scale=4, resize="average", noise_sigma=ref["sigma_0"])
    return ReleasedDeblur(ref, ref["sigma_0"])


def released_settings(ref, **change):
    assert ref["etaA"] == ref["etaC"] == ref["eta"]
    return {"steps": len(ref["seq"]), "eta": ref["eta"], "eta_b": ref["etaB"], **change}


def replay_run(ref, prior, operator, **change):
    trace = []
    replay = Replay([ref["x_T"]] + recorded_draws(ref))
    sampler = make_sampler("ddrm", **released_settings(ref, **change))
    result = sampler.run(ref["y_image"], operator, prior, noise=replay, callback=trace.append)
    return result, trace, replay


# --- the schedule ------------------------------------------------------------------------------------------


def test_schedule_matches_the_released_tables(ref_dir, prior):
    ref = load(ref_dir, "inpainting_random")
    sched = DDRM(steps=20).schedule(prior)
    # the betas (np.linspace in float64, cast to float32) and the float32 cumprod table, bitwise
    assert torch.equal(prior.ddpm_betas().to(torch.float32), ref["betas"])
    assert torch.equal(sched.abar_ext, ref["alphas_cumprod_ext"])
    assert torch.equal(sched.abar, ref["at"]) and torch.equal(sched.abar_next, ref["at_next"])
    assert sched.t == ref["steps_t"].tolist() and sched.t_next == ref["steps_t_next"].tolist()
    assert released_timesteps(1000, 20) == ref["seq"].tolist()
    # the same table for every file
    for name in ("super_resolution_x4", "deblur_gauss"):
        assert torch.equal(load(ref_dir, name)["alphas_cumprod_ext"], sched.abar_ext)
    # abar(-1) = 1 (the last step's t' = -1)
    assert sched.t_next[-1] == -1 and sched.abar_next[-1].item() == 1.0
    assert alphas_cumprod_ext(prior.ddpm_betas()).dtype == torch.float32


@pytest.mark.parametrize("steps, visited", [(20, 20), (15, 16), (3, 4), (7, 8), (1000, 1000), (1, 1), (999, 1000)])
def test_steps_is_the_released_timesteps_argument(steps, visited):
    """skip = 1000 // steps, timesteps range(0, 1000, skip): 15 steps visit 16 timesteps (0, 66, ..., 990)."""
    sched = DDRM(steps=steps).schedule(None)  # no prior: the linear schedule
    assert len(sched.t) == visited
    skip = 1000 // steps
    assert sched.t == list(range(0, 1000, skip))[::-1]
    assert sched.t_next == ([-1] + list(range(0, 1000, skip))[:-1])[::-1]
    if steps == 15:
        assert sched.t[0] == 990 and sched.t[-1] == 0


# --- the recorded runs -------------------------------------------------------------------------------------

FILES = ["deblur_gauss", "inpainting_random", "super_resolution_x4"]


@pytest.mark.parametrize("name", FILES)
def test_ddrm_replays_the_released_run(ref_dir, prior, name):
    ref = load(ref_dir, name)
    op = fixture_operator(name, ref)
    result, trace, replay = replay_run(ref, prior, op)
    n = len(ref["seq"])
    assert replay.used == len(replay.draws) == 3 * n + 1  # z, then C, A, B per step (A's shape is n_after[i])
    assert rel(result.x, ref["final"]) < TOL
    # the first state (rule 0) is the input of step 0: the callback's x_level
    assert rel(trace[0]["x_level"], ref["xs"][0]) < TOL
    for key, ours in [("xs", "x"), ("x0_preds", "x0_hat")]:
        recorded = ref[key][1:] if key == "xs" else ref[key]
        errors = [rel(t[ours], recorded[i]) for i, t in enumerate(trace)]
        assert len(errors) == n and max(errors) < TOL, (key, max(errors))
    # the branches: n_before / n_after per step from the released rule on the released singulars
    s = ref["singulars"]
    sched = DDRM(steps=n).schedule(prior)
    sigma_next = ((1 - sched.abar_next).sqrt() / sched.abar_next.sqrt()).tolist()
    assert [int((s * sn > ref["sigma_0"]).sum()) for sn in sigma_next] == ref["n_before"].tolist()
    assert [int((s * sn < ref["sigma_0"]).sum()) for sn in sigma_next] == ref["n_after"].tolist()
    # costs: one network call per step and no gradients; one projection round trip per step and one for the start
    stats = result.stats
    assert stats.denoiser_calls == ref["settings"]["network_calls"] == n
    assert stats.vjps == stats.operator_grads == 0
    assert stats.operator_solves == n + 1
    assert stats.failed == [False]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("wrong", [{"eta": 0.5}, {"eta_b": 0.85}])
def test_a_wrong_rule_misses_the_released_run(ref_dir, prior, name, wrong):
    """The README's known deviations (eta_A = eta_C = 0.5; eta_B = 0.85) miss each file by far more than the
    tolerance (README: 0.28 .. 0.37 and 0.018 .. 0.058)."""
    ref = load(ref_dir, name)
    result, _, replay = replay_run(ref, prior, fixture_operator(name, ref), **wrong)
    assert replay.used == len(replay.draws)
    assert rel(result.x, ref["final"]) > MISS


def test_x_start_is_the_first_state(ref_dir, prior):
    """x_start replaces rule 0 (no z is drawn): the recorded first state gives the recorded run."""
    ref = load(ref_dir, "deblur_gauss")
    replay = Replay(recorded_draws(ref))
    result = make_sampler("ddrm", **released_settings(ref)).run(
        ref["y_image"], ReleasedDeblur(ref), prior, noise=replay, x_start=ref["xs"][0])
    assert replay.used == len(replay.draws)
    assert rel(result.x, ref["final"]) < TOL
    assert result.stats.operator_solves == len(ref["seq"])


def test_zero_singulars_null_is_the_papers_rule(ref_dir, prior):
    """zero_singulars="null" takes s = 0 entries out of the "after" rule (the paper's null space): on the deblur
    H-function (1488 zero singular values) fewer "after" entries are drawn and the run moves away from the release;
    without zero singular values it changes nothing."""
    ref = load(ref_dir, "deblur_gauss")
    shapes = []

    def noise(shape, dtype, device):
        shapes.append(tuple(shape))
        return torch.zeros(shape, dtype=dtype, device=device)

    make_sampler("ddrm", steps=20, zero_singulars="null").run(ref["y_image"], ReleasedDeblur(ref), prior, noise=noise)
    zeros = int((ref["singulars"] == 0).sum())
    assert zeros == 1488
    assert [s[1] for s in shapes[2::3]] == (ref["n_after"] - zeros).tolist()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    op = ReleasedDeblur(ref)
    paper = make_sampler("ddrm", steps=5, zero_singulars="null").run(ref["y_image"], op, prior, generator=g())
    release = make_sampler("ddrm", steps=5).run(ref["y_image"], op, prior, generator=g())
    assert rel(paper.x, release.x) > MISS
    y, mask_op = small_problem(same_mask=True)
    a = make_sampler("ddrm", steps=4, zero_singulars="null").run(y, mask_op, toy_prior, generator=g())
    b = make_sampler("ddrm", steps=4).run(y, mask_op, toy_prior, generator=g())
    assert torch.equal(a.x, b.x)


# --- batches, priors and operators -------------------------------------------------------------------------


def toy_prior(x, sigma):
    return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


class PixelMasks:
    """y = m x with a 0/1 mask per image (B, 1, H, W); its SVD per image: kept pixels (channel-major order), then
    the missing ones; one shared SVD object when `shared`."""

    noise_sigma = 0.05

    def __init__(self, masks, shared=False):
        self.masks, self.shared = masks, shared

    def forward(self, x):
        return x * self.masks.to(x)

    def svd(self, x_shape):
        svds = [_MaskSVD(m.expand(x_shape[1], -1, -1).reshape(-1)) for m in self.masks]
        if self.shared:
            return svds[0]
        return svds * x_shape[0] if len(svds) == 1 else svds


class _MaskSVD:
    def __init__(self, keep):
        self.keep = keep.nonzero().flatten()
        self.order = torch.cat([self.keep, (keep == 0).nonzero().flatten()])

    def singulars(self):
        return torch.ones(len(self.keep))

    def Vt(self, x):
        return x.reshape(x.shape[0], -1)[:, self.order]

    def V(self, v):
        out = torch.empty_like(v)
        out[:, self.order] = v
        return out.reshape(v.shape[0], 3, 8, 8)

    def Ut(self, y):
        return y.reshape(y.shape[0], -1)[:, self.keep]

    def U(self, u):
        out = u.new_zeros(u.shape[0], 3 * 64)
        out[:, self.keep] = u
        return out.reshape(u.shape[0], 3, 8, 8)


def small_problem(same_mask=False, shared=False):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    masks = (torch.rand(2, 1, 8, 8, generator=g) > 0.6).float()
    if same_mask:
        masks = masks[:1].expand(2, -1, -1, -1).clone()
    op = PixelMasks(masks, shared=shared)
    return op.forward(x) + 0.05 * torch.randn(x.shape, generator=g) * masks, op


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_each_image_alone_equals_it_inside_a_batch_with_its_own_mask():
    """Different masks (different L): the per-image spectral path, draws from each image's own generator."""
    y, op = small_problem()
    assert op.masks[0].sum() != op.masks[1].sum()
    batch = make_sampler("ddrm", steps=10).run(y, op, toy_prior, generator=gens(1, 2))
    for i, seed in enumerate((1, 2)):
        alone = make_sampler("ddrm", steps=10).run(y[i : i + 1], PixelMasks(op.masks[i : i + 1]), toy_prior,
                                                   generator=gens(seed))
        torch.testing.assert_close(batch.x[i : i + 1], alone.x, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(batch.x).all() and batch.stats.failed == [False, False]


def test_the_shared_svd_path_equals_the_per_image_path():
    """The same mask as one shared SVD object (vectorised: draws C (2, D), A (2, n_after), B (2, L)) or as one object
    per image (image 0's draws (1, ...), then image 1's, each step): with one generator per image both paths get the
    same numbers, so the same result."""
    y, shared = small_problem(same_mask=True, shared=True)
    per_image = PixelMasks(shared.masks)  # two SVD objects of the same mask
    assert not isinstance(shared.svd(y.shape), list) and len(per_image.svd(y.shape)) == 2
    a = make_sampler("ddrm", steps=5).run(y, shared, toy_prior, generator=gens(3, 4))
    b = make_sampler("ddrm", steps=5).run(y, per_image, toy_prior, generator=gens(3, 4))
    torch.testing.assert_close(a.x, b.x, rtol=1e-6, atol=1e-6)
    # the draw shapes of the two paths
    L = int(shared.masks[0].sum()) * 3
    for op, per_step in ((shared, [(2, 192), (2, 0), (2, L)]), (per_image, [(1, 192), (1, 0), (1, L)] * 2)):
        shapes = []

        def noise(shape, dtype, device):
            shapes.append(tuple(shape))
            return torch.zeros(shape, dtype=dtype, device=device)

        make_sampler("ddrm", steps=5).run(y, op, toy_prior, noise=noise)
        assert shapes[0] == (2, 3, 8, 8) and shapes[1 : 1 + len(per_step)] == per_step
        assert len(shapes) == 1 + 5 * len(per_step)  # 5 steps visit 5 timesteps


def test_a_prior_without_timesteps_runs_and_counts_its_calls():
    y, op = small_problem()
    result = make_sampler("ddrm", steps=15).run(y, op, spgd.load_prior("gaussian"), generator=gens(0, 1))
    assert torch.isfinite(result.x).all() and result.stats.failed == [False, False]
    assert result.stats.denoiser_calls == 16  # 15 steps visit 16 timesteps
    assert result.stats.operator_solves == 17 and result.stats.vjps == 0
    # a noiseless measurement (sigma_0 = 0): no entry is ever "after", the run stays finite
    op.noise_sigma = 0.0
    result = make_sampler("ddrm", steps=5).run(op.forward(y), op, toy_prior, generator=gens(0, 1))
    assert torch.isfinite(result.x).all() and result.stats.failed == [False, False]


def test_the_callback_splits_each_step_into_data_and_prior_parts():
    """x_level = the state before the step; x - x_warm = the step with the data rules removed (every entry by the
    null-space rule, same draws), so the data part x_warm - x_level lives on the observed pixels only."""
    y, op = small_problem()
    trace = []
    result = make_sampler("ddrm", steps=5).run(y, op, toy_prior, generator=gens(0, 1), callback=trace.append)
    assert len(trace) == 5 and torch.equal(trace[-1]["x"], result.x)
    for k, info in enumerate(trace):
        assert {"step", "sigma", "x", "x0_hat", "alive", "loss", "x_level", "x_warm"} <= set(info)
        before = trace[k - 1]["x"] if k else None
        if before is not None:
            assert torch.equal(info["x_level"], before)
        data = info["x_warm"] - info["x_level"]
        missing = (op.masks == 0).expand_as(data)
        assert data[missing].abs().max() < 1e-5 * info["x"].abs().max()
        if k < len(trace) - 1:  # at the last step (sigma' = 0) both rules give v0: no data part
            assert data[~missing].abs().max() > 0
        assert info["loss"][0].shape == (2,)
    sigmas = [t["sigma"] for t in trace]
    assert sigmas == sorted(sigmas, reverse=True)


def test_an_operator_without_an_svd_is_refused_in_one_line():
    y = torch.zeros(1, 3, 16, 16)

    class Plain:
        noise_sigma = 0.05

        def forward(self, x):
            return x

    for op in (Plain(), spgd.make_operator("motion_blur", kernel_size=5)):
        with pytest.raises(SpgdError) as err:
            make_sampler("ddrm", steps=2).run(y, op, toy_prior)
        assert "\n" not in str(err.value) and "svd" in str(err.value).lower()


def test_bad_settings_are_refused():
    for settings, text in [({"eta": 2.0}, "eta must be in"), ({"eta_b": -0.1}, "eta_b must be in"),
                           ({"steps": 0}, "steps must be"), ({"zero_singulars": "paper"}, "zero_singulars"),
                           ({"check_every": 0}, "check_every")]:
        with pytest.raises(SpgdError, match=text):
            make_sampler("ddrm", **settings)
    y, op = small_problem()
    with pytest.raises(SpgdError, match="steps must be <="):
        make_sampler("ddrm", steps=1001).run(y, op, toy_prior)
    op.noise_sigma = None
    with pytest.raises(SpgdError, match="noise_sigma"):
        make_sampler("ddrm").run(y, op, toy_prior)
