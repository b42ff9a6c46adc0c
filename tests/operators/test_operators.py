"""The degradation operators: parity with the reference code, adjoints, random parts, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spgd.errors import SpgdError
from spgd.operators import (
    TASKS,
    Blur,
    Denoising,
    GaussianBlur,
    HighDynamicRange,
    InpaintingBox,
    InpaintingRandom,
    KernelWizard,
    MotionBlur,
    NonlinearBlur,
    PhaseRetrieval,
    SuperResolution,
    adjointness_error,
    gaussian_kernel,
    make_operator,
    motion_kernel,
)
from spgd.operators.nonlinear_blur import load_kernel_wizard


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def tiny_wizard(seed: int = 0) -> KernelWizard:
    torch.manual_seed(seed)
    return KernelWizard(nf=8, front_blocks=1, back_blocks=1)


# ------------------------------------------------------------------------------------------------------
# Parity with the authors' code


@pytest.fixture(scope="module")
def reference(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "operators_reference.pt", weights_only=True)


def _reference_operator(name: str, ref: dict):
    ops = ref["operators"]
    if name == "gaussian_blur":
        return make_operator("gaussian_blur")
    if name == "motion_blur":
        return MotionBlur(kernel=ops["motion_blur"]["kernel"])
    if name == "down_sampling":
        return make_operator("super_resolution", scale=4)
    if name == "phase_retrieval":
        return make_operator("phase_retrieval", oversample=2.0)
    if name == "high_dynamic_range":
        return make_operator("hdr", scale=2)
    return make_operator(name, mask=ops[name]["mask"])


@pytest.mark.parametrize(
    "name",
    ["gaussian_blur", "motion_blur", "down_sampling", "phase_retrieval", "high_dynamic_range",
     "inpainting_box", "inpainting_random"],
)  # fmt: skip
def test_matches_reference_output(reference: dict, name: str) -> None:
    op = _reference_operator(name, reference)
    expected = reference["operators"][name]["output"]
    out = op(reference["input"])
    assert out.shape == expected.shape
    assert rel_err(out, expected) < 1e-4


def test_gaussian_kernel_equals_reference(reference: dict) -> None:
    expected = reference["operators"]["gaussian_blur"]["kernel"]
    assert torch.allclose(gaussian_kernel(61, 3.0).float(), expected, atol=1e-7, rtol=0)
    assert torch.allclose(GaussianBlur().random_parts()["kernel"], expected, atol=1e-7, rtol=0)


def test_user_kernel_from_file_matches_reference(reference: dict, tmp_path: Path) -> None:
    kernel = reference["operators"]["motion_blur"]["kernel"]
    np.save(tmp_path / "k.npy", kernel.numpy())
    out = make_operator("blur", kernel=tmp_path / "k.npy")(reference["input"])
    assert rel_err(out, reference["operators"]["motion_blur"]["output"]) < 1e-4


# ------------------------------------------------------------------------------------------------------
# Adjoints


LINEAR = {
    "denoising": lambda: Denoising(),
    "gaussian_blur_9": lambda: GaussianBlur(9, 1.5),
    "gaussian_blur_31_on_32px": lambda: GaussianBlur(31, 3.0),
    "motion_blur": lambda: MotionBlur(11, 0.5, seed=3),
    "blur_per_image": lambda: Blur(torch.rand(2, 5, 7)),
    "super_resolution_x2": lambda: SuperResolution(2),
    "super_resolution_x4": lambda: SuperResolution(4),
    "super_resolution_x8": lambda: SuperResolution(8),
    "inpainting_box": lambda: InpaintingBox(8, 2, seed=1),
    "inpainting_random": lambda: InpaintingRandom(0.7, seed=1),
}


@pytest.mark.parametrize("name", list(LINEAR))
def test_adjoint_dot_product(name: str) -> None:
    op = LINEAR[name]()
    assert adjointness_error(op, (2, 3, 32, 32), dtype=torch.float64) < 1e-10
    assert adjointness_error(op, (2, 3, 32, 40), dtype=torch.float64, seed=1) < 1e-10


def test_super_resolution_adjoint_is_transpose_of_rows_summing_to_one() -> None:
    op = SuperResolution(4)
    y = op(torch.ones(1, 3, 64, 64, dtype=torch.float64))
    assert torch.allclose(y, torch.ones_like(y))


# ------------------------------------------------------------------------------------------------------
# Random parts


def test_random_mask_drop_fraction() -> None:
    op = InpaintingRandom(drop=0.8, seed=5)
    op(torch.zeros(4, 3, 64, 64))
    mask = op.random_parts()["mask"]
    assert mask.shape == (4, 1, 64, 64)
    kept = mask.mean(dim=(1, 2, 3))
    assert torch.allclose(kept, torch.full((4,), 0.2), atol=1e-3)
    assert not torch.equal(mask[0], mask[1])  # each image its own mask


def test_box_mask_size_and_margin() -> None:
    op = InpaintingBox(box_size=16, margin=5, seed=0)
    op.prepare(30, 64, 64)
    masks = op.random_parts()["mask"][:, 0]
    tops = set()
    for m in masks:
        rows, cols = torch.nonzero(m == 0, as_tuple=True)
        assert len(rows) == 16 * 16
        assert rows.max() - rows.min() == 15 and cols.max() - cols.min() == 15
        assert rows.min() >= 5 and cols.min() >= 5 and rows.max() <= 64 - 1 - 5 and cols.max() <= 64 - 1 - 5
        tops.add(int(rows.min()))
    assert len(tops) > 5  # positions vary


def test_default_box_is_128_within_16px() -> None:
    op = make_operator("inpainting_box")
    op.prepare(2, 256, 256)
    for m in op.random_parts()["mask"][:, 0]:
        rows, cols = torch.nonzero(m == 0, as_tuple=True)
        assert len(rows) == 128 * 128 and rows.min() >= 16 and cols.max() <= 255 - 16


def test_motion_kernels_valid_seeded_and_varied() -> None:
    kernels = [motion_kernel(21, 0.5, torch.Generator().manual_seed(s)) for s in range(4)]
    for k in kernels:
        assert k.shape == (21, 21) and (k >= 0).all()
        assert abs(float(k.sum()) - 1.0) < 1e-6
    assert all(not torch.allclose(kernels[0], k) for k in kernels[1:])
    again = motion_kernel(21, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(again, kernels[2])


@pytest.mark.parametrize(
    "make",
    [
        lambda s: MotionBlur(15, 0.5, seed=s),
        lambda s: InpaintingBox(8, 2, seed=s),
        lambda s: InpaintingRandom(0.8, seed=s),
        lambda s: NonlinearBlur(network=tiny_wizard(), seed=s),
    ],
    ids=["motion_blur", "inpainting_box", "inpainting_random", "nonlinear_blur"],
)
def test_per_image_seeding_independent_of_batch(make) -> None:  # noqa: ANN001
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    seed = 7
    batched = make(seed)
    y = batched(x)
    for i in range(3):
        single = make(seed + i)
        assert torch.allclose(single(x[i : i + 1]), y[i : i + 1], atol=1e-5)
        (name,) = single.random_parts()
        assert torch.equal(single.random_parts()[name][0], batched.random_parts()[name][i])


def test_parts_redrawn_for_new_batch_size_and_saved_in_state_dict() -> None:
    op = InpaintingRandom(seed=2)
    op(torch.zeros(2, 3, 16, 16))
    first = op.random_parts()["mask"].clone()
    op(torch.zeros(3, 3, 16, 16))  # new batch size: redrawn from the same seeds
    assert torch.equal(op.random_parts()["mask"][:2], first)
    restored = InpaintingRandom(seed=99)
    restored.load_state_dict(op.state_dict())
    x = torch.rand(3, 3, 16, 16)
    assert torch.equal(restored(x), op(x))


def test_given_parts_are_used_and_checked() -> None:
    kernel = torch.zeros(5, 5)
    kernel[2, 2] = 1.0
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(MotionBlur(kernel=kernel)(x), x)
    with pytest.raises(SpgdError, match="per-image"):
        MotionBlur(kernel=torch.rand(3, 5, 5))(x)


# ------------------------------------------------------------------------------------------------------
# Every operator: batch sizes, dtypes, gradients, noise


ALL = {
    **LINEAR,
    "phase_retrieval": lambda: PhaseRetrieval(2.0),
    "hdr": lambda: HighDynamicRange(2.0),
}


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_differentiable_any_batch_and_dtype(name: str, dtype: torch.dtype) -> None:
    op = ALL[name]()
    batch = 2 if name == "blur_per_image" else 3
    x = (torch.rand(batch, 3, 32, 32, dtype=dtype) * 2 - 1).requires_grad_(True)
    y = op(x)
    assert y.dtype == dtype and y.shape[0] == batch
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_measure_adds_seeded_noise() -> None:
    op = make_operator("denoising", noise_sigma=0.1)
    x = torch.zeros(2, 3, 64, 64)
    y1 = op.measure(x, torch.Generator().manual_seed(0))
    y2 = op.measure(x, torch.Generator().manual_seed(0))
    assert torch.equal(y1, y2) and abs(float(y1.std()) - 0.1) < 0.005


# Every device this machine has: the CPU always, CUDA where present (then the check compares it with the CPU).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(ALL))
def test_device(name: str, device: str) -> None:
    op = ALL[name]()
    x = torch.rand(2, 3, 32, 32)
    ref = op(x)
    out = op.to(device)(x.to(device))
    assert out.device.type == device
    assert torch.allclose(out.cpu(), ref, atol=1e-5)


# ------------------------------------------------------------------------------------------------------
# make_operator: names, benchmark defaults


def test_benchmark_defaults() -> None:
    expected_noise = {"super_resolution": 0.01, "gaussian_blur": 0.01, "motion_blur": 0.01,
                      "inpainting_random": 0.01, "inpainting_box": 0.05, "phase_retrieval": 0.05,
                      "hdr": 0.05, "denoising": 0.05}  # fmt: skip
    for task, sigma in expected_noise.items():
        assert make_operator(task).noise_sigma == sigma
    assert make_operator("super_resolution").scale == 4
    g = make_operator("gaussian_blur")
    assert g.kernel_size == 61 and g.std == 3.0
    m = make_operator("motion_blur")
    assert m.kernel_size == 61 and m.intensity == 0.5
    assert make_operator("inpainting_box").box_size == (128, 128)
    assert make_operator("inpainting_random").drop == 0.8
    assert make_operator("phase_retrieval").oversample == 2.0
    assert make_operator("hdr").scale == 2.0
    assert make_operator("hdr", noise_sigma=0.0).noise_sigma == 0.0
    assert isinstance(make_operator("identity"), Denoising)
    assert set(TASKS) >= set(expected_noise) | {"nonlinear_blur"}


def test_phase_retrieval_output_size() -> None:
    assert make_operator("phase_retrieval")(torch.zeros(1, 3, 256, 256)).shape == (1, 3, 384, 384)


# ------------------------------------------------------------------------------------------------------
# Non-linear blur (BKSE KernelWizard), with random weights


def test_nonlinear_blur_with_random_weights(tmp_path: Path) -> None:
    net = tiny_wizard()
    op = NonlinearBlur(network=net, seed=0)
    x = (torch.rand(2, 3, 128, 256) * 2 - 1).requires_grad_(True)
    y = op(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    code = op.random_parts()["kernel_code"]
    assert code.shape == (2, 64, 1, 2) and abs(float(code.std()) - 1.2) < 0.3
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.equal(NonlinearBlur(network=tiny_wizard(), seed=0)(x), y)  # fixed code, no redraw per call

    path = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), path)
    loaded = load_kernel_wizard(path, nf=8, front_blocks=1, back_blocks=1)
    assert torch.equal(NonlinearBlur(network=loaded, seed=0)(x), y)


def test_kernel_wizard_parameter_names_follow_the_published_checkpoint() -> None:
    with torch.device("meta"):
        state = KernelWizard().state_dict()
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    expected = {
        "feature_extractor.0.weight": (64, 3, 3, 3),
        "feature_extractor.15.conv2.bias": (64,),
        "kernel_extractor.model.1.weight": (64, 128, 7, 7),
        "kernel_extractor.model.16.weight": (1024, 1024, 3, 3),
        "kernel_extractor.model.22.conv_block.5.weight": (1024, 1024, 3, 3),
        "adapter.model.down.0.weight": (64, 64, 4, 4),
        "adapter.model.up.1.weight": (128, 64, 4, 4),
        "adapter.model.up.1.bias": (64,),
        "adapter.model.submodule.submodule.submodule.submodule.down.1.weight": (512, 512, 4, 4),
        "adapter.model.submodule.submodule.submodule.submodule.up.1.weight": (1024, 512, 4, 4),
        "recon_trunk.19.conv1.weight": (64, 64, 3, 3),
        "recon_trunk.20.weight": (256, 64, 3, 3),
        "recon_trunk.28.weight": (3, 64, 3, 3),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "adapter.model.submodule.down.1.bias" not in shapes  # norm "none": bias-free convs


def test_nonlinear_blur_needs_weights(tmp_path: Path) -> None:
    with pytest.raises(SpgdError, match="GOPRO_wVAE.pth"):
        make_operator("nonlinear_blur")
    with pytest.raises(SpgdError, match="GOPRO_wVAE.pth"):
        make_operator("nonlinear_blur", weights=tmp_path / "missing.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(SpgdError, match="missing keys"):
        make_operator("nonlinear_blur", weights=tmp_path / "other.pth")
    op = NonlinearBlur(network=tiny_wizard())
    with pytest.raises(SpgdError, match="multiples of 128"):
        op(torch.zeros(1, 3, 192, 256))


# ------------------------------------------------------------------------------------------------------
# Bad input


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(SpgdError) as err:
        make_operator("deblur")
    assert "deblur" in str(err.value) and all(t in str(err.value) for t in TASKS)


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(SpgdError, match="sigma.*gaussian_blur.*valid: kernel_size, std"):
        make_operator("gaussian_blur", kernel_size=61, sigma=3.0)
    with pytest.raises(SpgdError, match="kernel"):
        make_operator("blur")


@pytest.mark.parametrize(
    "build, x_shape, message",
    [
        (lambda: GaussianBlur(kernel_size=60), None, "odd"),
        (lambda: MotionBlur(kernel_size=8), None, "odd"),
        (lambda: Blur(torch.ones(4, 4)), None, "odd"),
        (lambda: Blur(-torch.ones(3, 3)), None, "non-negative"),
        (lambda: Blur(torch.ones(3)), None, "2-D"),
        (lambda: MotionBlur(intensity=1.5), None, r"\[0, 1\)"),
        (lambda: GaussianBlur(61, 3.0), (1, 3, 32, 32), "larger than the image"),
        (lambda: SuperResolution(scale=4), (1, 3, 30, 32), "divide"),
        (lambda: SuperResolution(scale=0), None, "positive integer"),
        (lambda: InpaintingRandom(drop=1.0), None, r"\[0, 1\)"),
        (lambda: InpaintingRandom(drop=-0.1), None, r"\[0, 1\)"),
        (lambda: InpaintingBox(box_size=128, margin=16), (1, 3, 64, 64), "does not fit"),
        (lambda: GaussianBlur(9), (1, 1, 32, 32), "3 channels"),
        (lambda: SuperResolution(2), (1, 4, 32, 32), "3 channels"),
        (lambda: InpaintingRandom(), (2, 32, 32), r"\(B, C, H, W\)"),
        (lambda: PhaseRetrieval(), (1, 1, 32, 32), "3 channels"),
        (lambda: HighDynamicRange(), (1, 2, 32, 32), "3 channels"),
        (lambda: HighDynamicRange(scale=-1), None, "scale"),
        (lambda: Denoising(noise_sigma=-0.1), None, "noise_sigma"),
    ],
)
def test_bad_input_raises_clear_error(build, x_shape, message: str) -> None:  # noqa: ANN001
    with pytest.raises(SpgdError, match=message):
        op = build()
        op(torch.zeros(x_shape))
