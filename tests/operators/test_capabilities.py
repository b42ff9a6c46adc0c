"""The operators' optional capabilities (spgd.operators.capabilities): exact SVDs, data-proximal solves and
pseudo-inverses, checked as properties on every operator that offers them, and DDRM's layouts against the bases
stored in ../shared/fixtures/reference-ddrm/."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import spgd
from spgd.errors import SpgdError
from spgd.operators import adjointness_error, gaussian_kernel
from spgd.operators.capabilities import batch_svds, describe, offers, require
from spgd.operators.spectral import PINV_RCOND, block_average_basis, reflect_matrix, separable_factors

SHAPE = (2, 3, 16, 16)

# (name, builder): every operator with an exact SVD
WITH_SVD = {
    "inpainting_random (mask per image)": lambda: spgd.make_operator("inpainting_random", drop=0.7),
    "inpainting_box": lambda: spgd.make_operator("inpainting_box", box_size=6, margin=2),
    "inpainting shared mask": lambda: spgd.make_operator("inpainting_random", mask=torch.rand(16, 16) > 0.5),
    "super_resolution bicubic": lambda: spgd.make_operator("super_resolution", scale=4),
    "super_resolution average": lambda: spgd.make_operator("super_resolution", scale=4, resize="average"),
    "super_resolution separable kernel, reflect": lambda: spgd.make_operator(
        "super_resolution", scale=2, kernel=gaussian_kernel(5, 1.0), padding="reflect"),
    "gaussian_blur": lambda: spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5),
    "blur, separable user kernel": lambda: spgd.make_operator("blur", kernel=torch.outer(torch.tensor([1.0, 2, 1]),
                                                                                         torch.tensor([1.0, 3, 5, 3, 1]))),
    "denoising": lambda: spgd.make_operator("denoising"),
    "blur, circular": lambda: spgd.make_operator("blur", kernel=gaussian_kernel(9, 1.5), padding="circular"),
    "blur, circular, asymmetric kernel": lambda: spgd.make_operator("blur", kernel=torch.rand(5, 5) + 0.1,
                                                                   padding="circular"),
}
# linear operators without one (their prox and pinv are closed-form FFTs or conjugate gradients)
WITHOUT_SVD = {
    "motion_blur": lambda: spgd.make_operator("motion_blur", kernel_size=9),
    "blur, asymmetric kernel": lambda: spgd.make_operator("blur", kernel=torch.rand(5, 5) + 0.1),
    "super_resolution kernel, circular": lambda: spgd.make_operator(
        "super_resolution", scale=4, kernel=torch.rand(7, 7) - 0.2, padding="circular"),
}
ALL = {**WITH_SVD, **WITHOUT_SVD}


def x_of(seed=0):
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name", WITH_SVD)
def test_svd_is_an_exact_orthonormal_decomposition(name):
    op = WITH_SVD[name]()
    x = x_of()
    ax = op.forward(x)  # draws the per-image parts for this batch
    svds = batch_svds(op, SHAPE)
    assert len(svds) == SHAPE[0] and op.svd_kind == "exact"
    for i, svd in enumerate(svds):
        xi, yi = x[i : i + 1], ax[i : i + 1]
        s = svd.singulars().to(x)
        v = svd.Vt(xi)
        assert v.shape == (1, xi.numel()) and s.ndim == 1 and s.numel() <= v.shape[1]
        torch.testing.assert_close(svd.V(v), xi, atol=1e-6, rtol=0)  # V^T then V is the identity
        torch.testing.assert_close(v.norm(), xi.norm(), atol=1e-5, rtol=0)  # V is orthonormal
        torch.testing.assert_close(svd.U(s * v[:, : s.numel()]), yi, atol=1e-6, rtol=0)  # A = U diag(s) V^T
        torch.testing.assert_close(svd.U(svd.Ut(yi)), yi, atol=1e-6, rtol=0)
        assert svd.Ut(yi).shape == (1, s.numel())


def test_a_mask_per_image_gives_one_svd_per_image_and_a_shared_mask_one_object():
    per_image = WITH_SVD["inpainting_random (mask per image)"]()
    per_image.prepare(*SHAPE[:1], *SHAPE[2:])
    a, b = batch_svds(per_image, SHAPE)
    assert a is not b and not torch.equal(a.order, b.order)
    shared = WITH_SVD["inpainting shared mask"]()
    a, b = batch_svds(shared, SHAPE)
    assert a is b


@pytest.mark.parametrize("name", ALL)
def test_prox_solves_the_data_proximal_problem(name):
    """argmin ||y - A x||^2 + rho ||x - z||^2: the gradient A^T (A x - y) + rho (x - z) vanishes at the answer."""
    op = ALL[name]()
    y = op.forward(x_of(1))
    z = x_of(2)
    rho = torch.tensor([1e-3, 0.7], dtype=torch.float64)
    x = op.prox(z, y, rho)
    grad = op.adjoint(op.forward(x) - y) + rho.view(-1, 1, 1, 1) * (x - z)
    exact = "approximate" not in op.prox_kind  # (the block-average basis is float32, as DDRM takes it)
    tol = 1e-6 if exact else 1e-5 * float((op.adjoint(y) + rho.view(-1, 1, 1, 1) * z).abs().max())
    assert float(grad.abs().max()) < tol, (op.prox_kind, float(grad.abs().max()))


@pytest.mark.parametrize("name", ALL)
def test_pinv_is_a_pseudo_inverse(name):
    """A^+ y fits a measurement in A's range (up to the truncated singular values) and lies in A^T's range, so
    A^+ A A^+ y = A^+ y."""
    op = ALL[name]()
    y = op.forward(x_of(3))
    x = op.pinv(y)
    assert x.shape == SHAPE
    if "approximate" in op.pinv_kind:  # conjugate gradients: a fixed number of iterations, only close
        assert float((op.forward(x) - y).norm() / y.norm()) < 0.1
        return
    torch.testing.assert_close(op.pinv(op.forward(x)), x, atol=1e-6 * float(x.abs().max()), rtol=0)
    if name.startswith(("inpainting", "super_resolution average", "denoising", "super_resolution kernel")):
        # no singular value is small enough to be truncated: A A^+ y = y exactly
        torch.testing.assert_close(op.forward(x), y, atol=1e-9, rtol=0)


def test_pinv_truncates_the_small_singular_values_of_a_blur():
    op = spgd.make_operator("gaussian_blur", kernel_size=9, std=1.5)
    s = op.svd(SHAPE)[0].singulars()
    assert float(s.min()) < PINV_RCOND * float(s.max())  # the blur does have tiny singular values
    y = op.forward(x_of(4)) + 0.01 * x_of(5)
    assert float(op.pinv(y).abs().max()) < 10 * float(y.abs().max()) / PINV_RCOND  # no 1/1e-10 blow-up


@pytest.mark.parametrize("name", ["blur, circular", "super_resolution kernel, circular",
                                  "super_resolution average", "super_resolution separable kernel, reflect"])
def test_new_operator_forms_have_exact_adjoints_and_the_stated_forward(name):
    op = ALL[name]()
    assert adjointness_error(op, SHAPE) < 1e-12
    x = x_of(6)
    if "circular" in name:
        k = op.kernel.to(x)
        p = k.shape[-1] // 2
        full = F.conv2d(F.pad(x.reshape(1, 6, 16, 16), (p,) * 4, mode="circular"), k.expand(6, 1, -1, -1), groups=6)
        s = getattr(op, "scale", 1)
        torch.testing.assert_close(op.forward(x), full.reshape(SHAPE)[..., 0::s, 0::s])
    elif "average" in name:
        torch.testing.assert_close(op.forward(x), x.reshape(2, 3, 4, 4, 4, 4).mean((3, 5)))


def test_reflect_matrix_is_one_axis_of_the_blur():
    k = gaussian_kernel(7, 1.2)
    col, row = separable_factors(k)
    torch.testing.assert_close(torch.outer(col, row), k)
    x = x_of(7)[0, 0]
    two_d = reflect_matrix(col, 16) @ x @ reflect_matrix(row, 16).T
    op = spgd.make_operator("blur", kernel=k, channels=None)
    torch.testing.assert_close(two_d, op.forward(x[None, None])[0, 0], atol=1e-6, rtol=0)
    assert separable_factors(torch.rand(5, 5) + 0.1) is None


def test_capabilities_are_described_and_refused_in_one_line():
    assert describe(spgd.make_operator("gaussian_blur")) == {"svd": "exact", "prox": "SVD (exact)",
                                                            "pinv": "SVD (exact, truncated)"}
    motion = spgd.make_operator("motion_blur")
    assert describe(motion)["svd"] == "" and "conjugate gradients" in describe(motion)["prox"]
    assert not offers(motion, "svd") and offers(motion, "prox")
    with pytest.raises(SpgdError, match=r"ddrm needs an operator with an exact singular value decomposition.*"
                                        r"MotionBlur has none: its kernel is not separable"):
        require(motion, "svd", "ddrm")

    class Mine:  # a user's operator: forward and noise_sigma only
        noise_sigma = 0.0

        def forward(self, x):
            return x

    for capability, method in [("svd", "ddrm"), ("prox", "diffpir"), ("pinv", "pigdm")]:
        with pytest.raises(SpgdError) as err:
            require(Mine(), capability, method)
        assert "\n" not in str(err.value) and "Mine has none" in str(err.value)
    Mine.pinv = lambda self, y: y  # opting in is defining the method
    require(Mine(), "pinv", "pigdm")
    with pytest.raises(SpgdError, match="resize must be one of"):
        spgd.make_operator("super_resolution", resize="nearest")
    with pytest.raises(SpgdError, match="needs kernel="):
        spgd.make_operator("super_resolution", resize="kernel")
    with pytest.raises(SpgdError, match="padding must be one of"):
        spgd.make_operator("gaussian_blur", padding="zeros")


# --- DDRM's layouts, against the bases its fixtures store ---------------------------------------------------


@pytest.fixture(scope="module")
def ddrm_dir(shared_dir):
    return shared_dir / "fixtures" / "reference-ddrm"


def test_inpainting_svd_has_ddrms_layout(ddrm_dir):
    ref = torch.load(ddrm_dir / "ddrm_inpainting_random.pt", weights_only=True)
    op = spgd.make_operator("inpainting_random", mask=ref["mask"], noise_sigma=ref["sigma_0"])
    (svd,) = batch_svds(op, (1, 3, 64, 64))
    xq = ref["gt"].permute(0, 2, 3, 1).reshape(1, -1)
    v = svd.Vt(ref["gt"])
    assert torch.equal(v[:, : len(ref["kept_indices"])], xq[:, ref["kept_indices"]])
    assert torch.equal(v[:, len(ref["kept_indices"]) :], xq[:, ref["missing_indices"]])
    assert torch.equal(svd.Ut(ref["y_image"]), ref["y"]) and torch.equal(svd.singulars(), ref["singulars"])


def test_block_average_svd_has_ddrms_basis(ddrm_dir):
    ref = torch.load(ddrm_dir / "ddrm_super_resolution_x4.pt", weights_only=True)
    u, s, v = block_average_basis(4)
    assert torch.equal(v, ref["V_small"]) and torch.equal(u, ref["U_small"]) and torch.equal(s, ref["singulars_small"])
    op = spgd.make_operator("super_resolution", scale=4, resize="average", noise_sigma=ref["sigma_0"])
    assert torch.equal(op.forward(ref["gt"]).reshape(1, -1), ref["y_clean"])
    (svd,) = batch_svds(op, (1, 3, 64, 64))
    assert torch.equal(svd.Ut(ref["y_image"]), -ref["y"])  # U = -1, as torch.svd returned it
    assert torch.equal(svd.singulars().to(ref["singulars"]), ref["singulars"])
    # block m's coefficients: w_m[0] first for every block, then w_m[1:] block after block
    patches = ref["gt"].reshape(1, 3, 16, 4, 16, 4).permute(0, 1, 2, 4, 3, 5).reshape(1, 768, 16)
    w = patches @ ref["V_small"]
    torch.testing.assert_close(svd.Vt(ref["gt"]), torch.cat([w[..., 0], w[..., 1:].reshape(1, -1)], 1))
