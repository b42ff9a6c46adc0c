"""The Python API answers bad values with SpgdError naming the value (spgd.restore, spgd.api)."""

from __future__ import annotations

import pytest

from conftest import blur_problem

import spgd
from spgd.errors import SpgdError


def test_api_int64_measurement():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="int64"):
        spgd.restore((y * 127).long(), op, prior, steps=2, warmup_steps=1)


def test_api_generator_int():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="generator must be .* got 0"):
        spgd.restore(y, op, prior, generator=0, steps=2, warmup_steps=1)


@pytest.mark.parametrize("setting,pattern", [({"lr": "abc"}, "lr must be a finite number, got 'abc'"),
                                             ({"steps": 2.5}, "steps must be an integer, got 2.5")])
def test_api_setting_types(setting, pattern):
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match=pattern):
        spgd.restore(y, op, prior, **{"steps": 2, "warmup_steps": 1, **setting})


def test_api_operator_plain_function():
    prior, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match="operator must be an object with forward"):
        spgd.restore(y, op.forward, prior, steps=2, warmup_steps=1)


@pytest.mark.parametrize("bad,pattern", [(lambda x: x, "prior must be callable as prior"),
                                         (lambda x, s: x[:, :1], "shaped like x")])
def test_api_prior_wrong_signature_or_shape(bad, pattern):
    _, op, y = blur_problem(1)
    with pytest.raises(SpgdError, match=pattern):
        spgd.restore(y, op, bad, steps=2, warmup_steps=1)
