"""`spgd.samplers.catalog` and `spgd methods`: what each method matches and which operators it takes."""

from __future__ import annotations

import pytest
import torch

import spgd
from spgd.errors import SpgdError
from spgd.samplers import METHODS, make_sampler
from spgd.samplers.catalog import SOURCES, needs, operator_support

from conftest import run_cli


def test_every_method_says_what_it_matches():
    assert set(SOURCES) == set(METHODS)
    for method in ("ddrm", "diffpir", "pigdm", "reddiff", "dps", "daps", "daps-2025"):
        assert "@" in SOURCES[method][1], method  # a repository @ commit


@pytest.mark.parametrize(
    "method, task, params, status",
    [
        ("ddrm", "gaussian_blur", {}, "yes"),  # separable: an exact SVD
        ("ddrm", "motion_blur", {}, "no"),  # a camera-shake kernel is not separable
        ("ddrm", "motion_blur", {"padding": "circular"}, "yes"),  # a circular blur has a (Fourier) SVD
        ("ddrm", "super_resolution", {}, "yes"),
        ("diffpir", "motion_blur", {}, "approximate"),  # its prox is conjugate gradients there
        ("diffpir", "inpainting_box", {}, "yes"),
        ("pigdm", "motion_blur", {}, "approximate"),
        ("pigdm", "phase_retrieval", {}, "no"),  # not linear: no pseudo-inverse
        ("reddiff", "phase_retrieval", {}, "yes"),  # A alone
        ("classical", "hdr", {}, "no"),
        ("spgd", "hdr", {}, "yes"),
    ],
)
def test_operator_support_follows_the_capabilities(method, task, params, status):
    support = operator_support(method, spgd.make_operator(task, **params))
    assert support.status == status, support
    if status != "yes":
        assert support.detail


def test_a_method_refuses_an_operator_it_cannot_take_before_any_work():
    prior = spgd.load_prior("gaussian")
    y = torch.zeros(1, 3, 16, 16)
    op = spgd.make_operator("motion_blur", kernel_size=5)
    assert "svd" in needs("ddrm")
    with pytest.raises(SpgdError, match="ddrm needs an operator with an exact singular value decomposition"):
        make_sampler("ddrm", steps=2).run(y, op, prior)


def test_spgd_methods_prints_every_method_and_the_reasons(capsys):
    code, out, err = run_cli(capsys, "methods")
    assert code == 0, err
    lines = out.splitlines()
    for method in METHODS:
        assert any(line.startswith(method + " ") for line in lines), method
    ddrm = next(line for line in lines if line.startswith("ddrm "))
    assert "bahjat-kawar/ddrm @ 32b6b3c" in ddrm and "svd" in ddrm
    assert "ddrm on motion_blur: refused" in out
    code, verbose, _ = run_cli(capsys, "methods", "-v")
    assert code == 0 and verbose.count("refused") > out.count("refused")
