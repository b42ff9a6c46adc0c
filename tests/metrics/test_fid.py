"""FID/KID: the Fréchet distance against its closed form and torchmetrics, KID's estimator, the Inception
feature extractor with random weights in the pytorch-fid key layout, statistics files and `spgd fid`."""

from pathlib import Path

import numpy as np
import pytest
import torch

from spgd.errors import SpgdError
from spgd.metrics import fid as F
from spgd.metrics.inception import FIDInception, resize_tf1_bilinear


def _random_orthogonal(d: int, g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def test_frechet_closed_form():
    # commuting covariances Q diag(a) Q^T, Q diag(b) Q^T: d^2 = |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2
    g = torch.Generator().manual_seed(0)
    d = 16
    q = _random_orthogonal(d, g)
    a = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    b = torch.rand(d, generator=g, dtype=torch.float64) * 3 + 0.1
    mu1 = torch.randn(d, generator=g, dtype=torch.float64)
    mu2 = torch.randn(d, generator=g, dtype=torch.float64)
    s1, s2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    expected = float((mu1 - mu2).square().sum() + (a.sqrt() - b.sqrt()).square().sum())
    assert abs(F.frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-6
    # non-commuting: tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)), evaluated with symmetric eigh
    r = _random_orthogonal(d, g)
    s2 = r @ torch.diag(b) @ r.T
    root1 = q @ torch.diag(a.sqrt()) @ q.T
    inner = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp(min=0).sqrt().sum()
    expected = float((mu1 - mu2).square().sum() + a.sum() + b.sum() - 2 * inner)
    assert abs(F.frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-6
    assert abs(F.frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_frechet_matches_torchmetrics():
    from torchmetrics.image.fid import _compute_fid

    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 32, generator=g, dtype=torch.float64)
    y = 0.5 + 1.3 * torch.randn(250, 32, generator=g, dtype=torch.float64) @ torch.randn(32, 32, generator=g,
                                                                                       dtype=torch.float64) / 6
    mu1, s1 = (torch.from_numpy(t) for t in F.feature_statistics(x))
    mu2, s2 = (torch.from_numpy(t) for t in F.feature_statistics(y))
    ref = float(_compute_fid(mu1, s1, mu2, s2))
    ours = F.fid_from_features(x, y)
    assert ref > 1.0 and abs(ours - ref) < 1e-8 * max(1.0, ref)
    # and the covariance is np.cov's (unbiased)
    assert np.allclose(s1.numpy(), np.cov(x.numpy(), rowvar=False), atol=1e-12)


def test_frechet_rejects_bad_input():
    with pytest.raises(SpgdError, match="do not match"):
        F.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    s = np.diag([1.0, -4.0])  # not PSD: sqrt of a negative eigenvalue is imaginary
    with pytest.raises(SpgdError, match="imaginary part"):
        F.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), s)


def test_fid_of_a_set_with_itself_is_zero():
    f = torch.randn(64, 20, generator=torch.Generator().manual_seed(2))
    assert abs(F.fid_from_features(f, f)) < 1e-8
    assert F.fid_from_features(f, f + 0.5) == pytest.approx(20 * 0.25, rel=1e-6)  # a pure mean shift


def _kid_brute(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


def test_kid_estimator_and_torchmetrics():
    from torchmetrics.image.kid import poly_mmd

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.3, 1.0, size=(6, 5))
    assert F.kid(x, y)["mean"] == pytest.approx(_kid_brute(x, y), rel=1e-12)
    y7 = rng.normal(0.3, 1.0, size=(7, 5))
    ref = float(poly_mmd(torch.from_numpy(x), torch.from_numpy(y7)))
    assert F.kid(x, y7)["mean"] == pytest.approx(ref, rel=1e-10)


def test_kid_is_unbiased():
    # two samples of one distribution: E[MMD^2_u] = 0, while the biased (V-statistic) estimate is > 0
    rng = np.random.default_rng(4)
    vals, biased = [], []
    for _ in range(400):
        x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
        vals.append(F.kid(x, y)["mean"])
        k = lambda a, b: (a @ b.T / 3 + 1.0) ** 3  # noqa: E731
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())
    vals = np.asarray(vals)
    se = vals.std() / np.sqrt(len(vals))
    assert abs(vals.mean()) < 3 * se
    assert np.mean(biased) > 10 * se


def test_kid_subsets():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 4)), rng.normal(1.0, 1.0, size=(30, 4))
    r = F.kid(x, y, subsets=10, subset_size=20, seed=0)
    assert r["subsets"] == 10 and r["subset_size"] == 20 and r["std"] > 0 and r["mean"] > 0
    assert F.kid(x, y, subsets=10, subset_size=20, seed=0) == r  # seeded
    with pytest.raises(SpgdError, match="at least 2"):
        F.kid(x[:1], y)


def test_small_set_warning():
    assert F.small_set_warning(10, 10) is not None and "10 vs 10" in F.small_set_warning(10, 10)
    assert F.small_set_warning(5000, 50000) is None


# ------------------------------------------------------------------------------------------ Inception




@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    from spgd.metrics import inception as I

    # build the layers without loading, by subclassing the loader away
    class Blank(I.FIDInception):
        def _load(self, path):  # noqa: D401 - random weights
            pass

    torch.manual_seed(0)
    m = Blank("unused")
    sd = {}
    for k, v in m.state_dict().items():
        if k.endswith("conv.weight"):  # He initialisation keeps the activations' scale through 94 layers
            v = torch.randn_like(v) * (2.0 / v[0].numel()) ** 0.5
        elif k.endswith("running_var") or k.endswith("bn.weight"):
            v = 0.8 + 0.4 * torch.rand_like(v)
        elif k.endswith("running_mean") or k.endswith("bn.bias"):
            v = 0.05 * torch.randn_like(v)
        sd[k] = v
    path = tmp_path_factory.mktemp("fid") / "pt_inception-2015-12-05-random.pth"
    torch.save(sd, path)
    return path


def test_inception_keys_are_the_pytorch_fid_layout(inception_weights):
    sd = torch.load(inception_weights, weights_only=True)
    for k in ("Conv2d_1a_3x3.conv.weight", "Conv2d_4a_3x3.bn.running_var", "Mixed_5b.branch_pool.conv.weight",
              "Mixed_6e.branch7x7dbl_5.bn.weight", "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight", "fc.bias"):
        assert k in sd, k
    assert sd["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert sd["Mixed_6b.branch7x7_2.conv.weight"].shape == (128, 128, 1, 7)
    assert sd["fc.weight"].shape == (1008, 2048)
    assert not any("AuxLogits" in k for k in sd)


def test_inception_features(inception_weights):
    model = FIDInception(inception_weights)
    g = torch.Generator().manual_seed(6)
    x = torch.rand(2, 3, 40, 48, generator=g)
    with torch.no_grad():
        f = model(x)
        f1 = model(x[1:])
    assert f.shape == (2, 2048) and f.dtype == torch.float32 and torch.isfinite(f).all()
    assert (f >= 0).all()  # after ReLU and average pooling
    assert torch.allclose(f[1:], f1, atol=1e-5)  # per image, batch-independent
    assert (f[0] - f[1]).abs().max() > 1e-4 * f.abs().max()  # features depend on the image
    other = FIDInception(inception_weights, resize="torch-fidelity")
    with torch.no_grad():
        g2 = other(x)
    assert (f - g2).abs().max() > 1e-4 * f.abs().max()  # the two code bases' input handling differ


def test_inception_input_handling():
    # pytorch-fid: 2x - 1 after torch bilinear; torch-fidelity: (255x - 128) / 128 after TF1 bilinear
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(7))
    m = FIDInception.__new__(FIDInception)
    m.resize = "pytorch-fid"
    assert torch.allclose(FIDInception._prepare(m, x), 2 * x - 1, atol=1e-6)
    m.resize = "torch-fidelity"
    assert torch.allclose(FIDInception._prepare(m, x), (255 * x - 128) / 128, atol=1e-5)
    # TF1 resize of 2 -> 4 samples at 0, .5, 1, 1.5 -> clamps to the last pixel
    t = torch.tensor([[[[0.0, 2.0]]]])
    out = resize_tf1_bilinear(t, (1, 4))
    assert torch.allclose(out, torch.tensor([[[[0.0, 1.0, 2.0, 2.0]]]]))


def test_inception_errors(tmp_path, inception_weights):
    with pytest.raises(SpgdError, match="not found.*pt_inception-2015-12-05"):
        FIDInception(tmp_path / "missing.pth")
    sd = torch.load(inception_weights, weights_only=True)
    del sd["Mixed_7c.branch_pool.bn.running_var"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(SpgdError, match="lacks Mixed_7c.branch_pool.bn.running_var"):
        FIDInception(tmp_path / "partial.pth")
    with pytest.raises(SpgdError, match="unknown resize mode"):
        FIDInception(inception_weights, resize="tf")


def test_statistics_file_roundtrip(tmp_path):
    f = torch.randn(12, 6, generator=torch.Generator().manual_seed(8))
    F.save_statistics(tmp_path / "ref.npz", f, "pytorch-fid")
    st = F.load_statistics(tmp_path / "ref.npz")
    assert st["n"] == 12 and st["resize"] == "pytorch-fid" and st["features"].shape == (12, 6)
    mu, sigma = F.feature_statistics(f)
    assert np.allclose(st["mu"], mu) and np.allclose(st["sigma"], sigma)
    np.savez(tmp_path / "pytorch_fid_style.npz", mu=mu, sigma=sigma)  # pytorch-fid --save-stats / EDM layout
    st2 = F.load_statistics(tmp_path / "pytorch_fid_style.npz")
    assert st2["features"] is None and st2["n"] is None
    with pytest.raises(SpgdError, match="lacks 'mu'"):
        np.savez(tmp_path / "bad.npz", x=mu)
        F.load_statistics(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------ commands


def test_spgd_fid_folders_and_cached_statistics(capsys, tmp_path, demo_dir, inception_weights):
    import json

    from conftest import copy_demo_images
    from spgd import cli

    a = copy_demo_images(demo_dir, tmp_path / "a", 3)
    w = str(inception_weights)
    code = cli.main(["fid", str(a), str(a), "--fid-weights", w, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and abs(out["fid"]) < 1e-3 and out["n_a"] == 3 and out["warning"]
    code = cli.main(["fid", str(a), "--fid-weights", w, "--save-stats", str(tmp_path / "ref.npz")])
    assert code == 0 and "written to" in capsys.readouterr().out
    code = cli.main(["fid", str(a), str(tmp_path / "ref.npz"), "--fid-weights", w, "--json"])
    cached = json.loads(capsys.readouterr().out)
    assert code == 0 and abs(cached["fid"]) < 1e-3 and cached["kid"]["mean"] == pytest.approx(out["kid"]["mean"])
    code = cli.main(["fid", str(a), str(tmp_path / "ref.npz"), "--fid-weights", w, "-v"])  # -v: what was read
    err = capsys.readouterr().err
    assert code == 0 and "fid: " + str(a) + ": 3 image(s), features" in err and "(statistics file)" in err
    code = cli.main(["fid", str(a), "--fid-weights", w])
    err = capsys.readouterr().err
    assert code == 2 and "needs --save-stats" in err


def test_eval_with_fid_and_piq_lpips(capsys, tmp_path, demo_dir, inception_weights):
    import json

    from conftest import copy_demo_images
    from spgd import cli
    from test_metrics import _random_weights

    images = copy_demo_images(demo_dir, tmp_path / "images", 2)
    backbone = _random_weights("vgg", tmp_path / "vgg16.pth", "torchvision")
    sd = torch.load(backbone, weights_only=True)
    torch.save([sd[f"lin{i}.model.1.weight"] for i in range(5)], tmp_path / "lpips_weights.pt")
    out = tmp_path / "runs"
    code = cli.main(["eval", str(images), "--task", "denoising", "--prior", "gaussian", "--set", "steps=2",
                     "--set", "warmup_steps=1", "--size", "64", "--resize", "--lpips-net", "piq-vgg",
                     "--lpips-weights", str(backbone), "--lpips-weights", str(tmp_path / "lpips_weights.pt"),
                     "--fid-weights", str(inception_weights), "--out", str(out), "-q"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    run_dir = next(p for p in out.iterdir() if p.is_dir())
    table = json.loads((run_dir / "metrics.json").read_text())
    assert table["lpips_label"] == "piq-lpips-vgg"
    e = table["per_method"]["spgd"]
    assert e["piq-lpips-vgg"]["mean"] > 0
    assert e["fid"]["n"] == 2 and e["fid"]["n_ref"] == 2 and e["fid"]["fid"] > 0 and "biased" in e["fid"]["warning"]
    assert len(list((run_dir / "fid_features" / "ground_truth").glob("*.pt"))) == 2
    assert "FID" in stdout and "piq-lpips-vgg" in stdout and "note: FID from 2 vs 2 images" in stdout
