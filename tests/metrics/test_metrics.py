"""PSNR/SSIM parity with piq 0.8.0 (shared fixture) and LPIPS code paths with random backbones."""

from pathlib import Path

import pytest
import torch

from spgd.errors import SpgdError
from spgd.metrics import LPIPS, lpips_or_reason, psnr, ssim
from spgd.metrics.lpips import BACKBONES, build_features, slice_numbers


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b).abs() / b.abs()).max())


@pytest.fixture(scope="module")
def metrics_ref(fixtures_dir: Path) -> dict:
    return torch.load(fixtures_dir / "metrics_reference.pt", weights_only=True)


def test_psnr_matches_piq(metrics_ref):
    ref, dist = metrics_ref["reference"], metrics_ref["distorted"]
    ours = torch.stack([psnr(dist[i], ref) for i in range(dist.shape[0])])
    assert ours.shape == metrics_ref["psnr"].shape
    assert _rel(ours, metrics_ref["psnr"]) < 1e-4


def test_ssim_matches_piq(metrics_ref):
    ref, dist = metrics_ref["reference"], metrics_ref["distorted"]
    ours = torch.stack([ssim(dist[i], ref) for i in range(dist.shape[0])])
    assert ours.shape == metrics_ref["ssim"].shape
    assert _rel(ours, metrics_ref["ssim"]) < 1e-4


def test_identical_images():
    x = torch.rand(3, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    assert torch.allclose(psnr(x, x), torch.full((3,), 80.0))  # piq's 1e-8 guard


def test_per_image_values_and_data_range():
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 3, 24, 24, generator=g)
    x = (ref + 0.05 * torch.randn(2, 3, 24, 24, generator=g)).clamp(0, 1)
    assert psnr(x, ref).shape == (2,) and ssim(x, ref).shape == (2,)
    single = psnr(x[1:], ref[1:])
    assert torch.allclose(psnr(x, ref)[1:], single)
    assert torch.allclose(psnr(255 * x, 255 * ref, data_range=255.0), psnr(x, ref), atol=1e-4)
    assert torch.allclose(ssim(255 * x, 255 * ref, data_range=255.0), ssim(x, ref), atol=1e-5)
    mse = ((x - ref) ** 2).mean(dim=(1, 2, 3))
    assert torch.allclose(psnr(x, ref), -10 * torch.log10(mse + 1e-8), atol=1e-4)


def test_ssim_downsamples_large_images():
    # 512x512 is pooled by 2 before the window, as in piq
    g = torch.Generator().manual_seed(2)
    ref = torch.rand(1, 1, 512, 512, generator=g)
    x = (ref + 0.1 * torch.rand(1, 1, 512, 512, generator=g)).clamp(0, 1)
    pooled = ssim(torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(ref, 2))
    assert torch.allclose(ssim(x, ref), pooled)
    assert not torch.allclose(ssim(x, ref, downsample=False), pooled)


@pytest.mark.parametrize(
    "x, ref, match",
    [
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17), "shapes differ"),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), r"\(B, C, H, W\)"),
        (torch.rand(1, 3, 16, 16) * 2 - 1, torch.rand(1, 3, 16, 16), r"\[0, 1\]"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16) + 1.5, r"\[0, 1\]"),
    ],
)
def test_bad_inputs(x, ref, match):
    for fn in (psnr, ssim):
        with pytest.raises(SpgdError, match=match):
            fn(x, ref)


def test_small_tolerance_and_small_image():
    x = torch.rand(1, 3, 16, 16)
    psnr(x + 1e-5, x)  # rounding noise just above 1 is accepted
    with pytest.raises(SpgdError, match="smaller than the 11x11 window"):
        ssim(torch.rand(1, 3, 8, 32), torch.rand(1, 3, 8, 32))


# -------------------------------------------------------------------------------------------------- LPIPS


def _random_weights(net: str, path: Path, layout: str) -> Path:
    """A weights file with a random backbone and random non-negative lin layers, in one of our layouts."""
    torch.manual_seed(0)
    spec, taps, chans = BACKBONES[net]
    features = build_features(spec)
    sd: dict[str, torch.Tensor] = {}
    slice_of = slice_numbers(net)
    for k, v in features.state_dict().items():
        idx, kind = k.split(".")
        if layout == "torchvision":
            sd[f"features.{idx}.{kind}"] = v
        else:
            sd[f"net.slice{slice_of[int(idx)]}.{idx}.{kind}"] = v
    for i, c in enumerate(chans):
        w = torch.rand(1, c, 1, 1) / c
        sd[f"lin{i}.model.1.weight"] = w
        if layout == "lpips":
            sd[f"lins.{i}.model.1.weight"] = w
    if layout == "lpips":
        sd["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    else:
        sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("lpips")
    return {
        (net, layout): _random_weights(net, d / f"{net}-{layout}.pth", layout)
        for net in ("vgg", "alex")
        for layout in ("torchvision", "lpips")
    }


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_properties(net, lpips_files):
    model = LPIPS(net, lpips_files[(net, "torchvision")])
    assert model.label == f"lpips-{net}"
    assert not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(2, 3, 32, 32, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        d = model(torch.cat([x, x, y]), torch.cat([x, y, x]))
        model.normalize = True  # the same images given in [0, 1]
        d_unit = model((x + 1) / 2, (y + 1) / 2)
    same, d_xy, d_yx = d[:2], d[2:4], d[4:]
    assert d.shape == (6,) and d_unit.shape == (2,)
    assert torch.allclose(same, torch.zeros(2), atol=1e-6)
    assert (d_xy > 0).all()
    assert torch.allclose(d_xy, d_yx, rtol=1e-4)
    assert torch.allclose(d_unit, d_xy, rtol=1e-4)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_lpips_layouts_agree(net, lpips_files):
    a = LPIPS(net, lpips_files[(net, "torchvision")])
    b = LPIPS(net, lpips_files[(net, "lpips")])
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_lpips_split_files(tmp_path, lpips_files):
    sd = torch.load(lpips_files[("alex", "torchvision")], weights_only=True)
    torch.save({k: v for k, v in sd.items() if k.startswith("features")}, tmp_path / "backbone.pth")
    torch.save({k: v for k, v in sd.items() if k.startswith("lin")}, tmp_path / "lin.pth")
    model = LPIPS("alex", [tmp_path / "backbone.pth", tmp_path / "lin.pth"])
    assert torch.equal(model.lins[2].weight, sd["lin2.model.1.weight"])


def test_lpips_errors(tmp_path, lpips_files):
    missing = tmp_path / "nope.pth"
    with pytest.raises(SpgdError, match="nope.pth.*not found.*v0.1/vgg.pth"):
        LPIPS("vgg", missing)
    with pytest.raises(SpgdError, match="unknown variant"):
        LPIPS("squeeze", missing)
    with pytest.raises(SpgdError, match="other network"):
        LPIPS("vgg", lpips_files[("alex", "torchvision")])
    sd = torch.load(lpips_files[("vgg", "torchvision")], weights_only=True)
    torch.save({k: v for k, v in sd.items() if not k.startswith("lin")}, tmp_path / "backbone.pth")
    with pytest.raises(SpgdError, match=r"lacks lin0\.model\.1\.weight"):
        LPIPS("vgg", tmp_path / "backbone.pth")
    sd["lin1.model.1.weight"] = -sd["lin1.model.1.weight"]
    torch.save(sd, tmp_path / "neg.pth")
    with pytest.raises(SpgdError, match="negative"):
        LPIPS("vgg", tmp_path / "neg.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(SpgdError, match="cannot read"):
        LPIPS("vgg", tmp_path / "junk.pth")


def test_lpips_or_reason(tmp_path, lpips_files):
    model, why = lpips_or_reason("vgg", None)
    assert model is None and why == "LPIPS (vgg) not computed: no weights file given (--lpips-weights)"
    model, why = lpips_or_reason("alex", tmp_path / "missing.pth")
    assert model is None and why.startswith("LPIPS (alex) not computed:") and "missing.pth" in why
    model, why = lpips_or_reason("alex", lpips_files[("alex", "lpips")])
    assert isinstance(model, LPIPS) and model.label == "lpips-alex" and "alex" in why


# ------------------------------------------------------------------------------------- piq's LPIPS


@pytest.fixture(scope="module")
def piq_files(tmp_path_factory, lpips_files) -> list[Path]:
    """torchvision VGG16 backbone + piq's heads file (a list of five (1, C, 1, 1) tensors)."""
    d = tmp_path_factory.mktemp("piq")
    sd = torch.load(lpips_files[("vgg", "torchvision")], weights_only=True)
    torch.save([sd[f"lin{i}.model.1.weight"] for i in range(5)], d / "lpips_weights.pt")
    return [lpips_files[("vgg", "torchvision")], d / "lpips_weights.pt"]


def _piq_reference(backbone: Path, heads: list, x01: torch.Tensor, y01: torch.Tensor, pool: str) -> torch.Tensor:
    """piq.LPIPS(replace_pooling=True) written out: ImageNet mean/std on [0, 1], VGG16 with 2x2 average
    pooling, unit-normalised features (eps 1e-10), (d * w).mean over pixels, summed over channels and layers."""
    sd = torch.load(backbone, weights_only=True)
    layers = build_features(BACKBONES["vgg"].layers, pool)
    layers.load_state_dict({k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.")})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def feats(t):
        t = (t - mean) / std
        out = []
        for i, layer in enumerate(layers):
            t = layer(t)
            if str(i) in ("3", "8", "15", "22", "29"):
                out.append(t / (torch.sqrt((t**2).sum(1, keepdim=True)) + 1e-10))
        return out

    per_layer = [((a - b) ** 2 * w).mean(dim=[2, 3]) for a, b, w in zip(feats(x01), feats(y01), heads)]
    return torch.cat(per_layer, dim=1).sum(dim=1)


def test_piq_lpips_matches_piq_formula_and_differs_from_max_pooling(piq_files):
    model = LPIPS("piq-vgg", piq_files)
    assert model.label == "piq-lpips-vgg"
    heads = torch.load(piq_files[1], weights_only=True)
    g = torch.Generator().manual_seed(4)
    x01 = torch.rand(2, 3, 32, 32, generator=g)
    y01 = (x01 + 0.2 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    with torch.no_grad():
        ours = model(2 * x01 - 1, 2 * y01 - 1)
        ref_avg = _piq_reference(piq_files[0], heads, x01, y01, "avg")
        ref_max = _piq_reference(piq_files[0], heads, x01, y01, "max")
        same = model(2 * x01 - 1, 2 * x01 - 1)
        swapped = model(2 * y01 - 1, 2 * x01 - 1)
        plain_vgg = LPIPS("vgg", piq_files[0])(2 * x01 - 1, 2 * y01 - 1)  # lpips scaling layer, max pooling
    assert torch.allclose(ours, ref_avg, rtol=1e-4), (ours, ref_avg)
    assert (ours - ref_max).abs().min() > 1e-3 * ours.abs().max()  # average vs max pooling: other values
    assert (ours - plain_vgg).abs().min() > 1e-3 * ours.abs().max()  # the lpips package's VGG: other values
    assert torch.allclose(same, torch.zeros(2), atol=1e-6)
    assert torch.allclose(ours, swapped, rtol=1e-4)
    # the ImageNet normalisation is applied: buffers give (x01 - mean) / std for x = 2 x01 - 1
    x = 2 * x01 - 1
    assert torch.allclose((x - model.shift) / model.scale,
                          (x01 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
                          / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), atol=1e-5)
    assert isinstance(model.features[4], torch.nn.AvgPool2d) and isinstance(LPIPS("vgg", piq_files[0]).features[4],
                                                                            torch.nn.MaxPool2d)


def test_piq_lpips_file_checks(tmp_path, piq_files, lpips_files):
    with pytest.raises(SpgdError, match="lacks piq's heads file.*lin\\*.model.1.weight heads.*lpips_weights.pt"):
        LPIPS("piq-vgg", lpips_files[("vgg", "torchvision")])
    with pytest.raises(SpgdError, match="piq's LPIPS heads file.*piq-vgg"):
        LPIPS("vgg", piq_files)
    heads = torch.load(piq_files[1], weights_only=True)
    torch.save(heads[:4], tmp_path / "four.pt")
    with pytest.raises(SpgdError, match="holds 4 tensors, expected 5"):
        LPIPS("piq-vgg", [piq_files[0], tmp_path / "four.pt"])
    with pytest.raises(SpgdError, match="lacks features.0.weight.*vgg16-397923af.pth"):
        LPIPS("piq-vgg", piq_files[1])
