"""Presets: each baseline's released per-task settings with their source, protocols, override precedence."""

from __future__ import annotations

import re

import pytest

from spgd.errors import SpgdError
from spgd.operators import TASKS
from spgd.presets import PROTOCOLS, apply_overrides, load_preset, preset_path, sampler_settings

# The released values, read off the releases' config files (the commits the presets cite):
# DPS2022/diffusion-posterior-sampling @ effbde7 configs/*_config.yaml `scale`;
# zhangbingliang2019/DAPS @ 25471a8 config/task/*.yaml `lgvd_config.lr` and @ 098df6b configs/task/*.yaml.
DPS_SCALE = {"gaussian_blur": 0.3, "motion_blur": 0.3, "nonlinear_blur": 0.3, "super_resolution": 0.3,
             "inpainting_random": 0.5, "inpainting_box": 0.5, "phase_retrieval": 1.0}
DAPS_LR = {"gaussian_blur": 1e-4, "super_resolution": 1e-4, "inpainting_random": 1e-4, "motion_blur": 5e-5,
           "inpainting_box": 5e-5, "phase_retrieval": 5e-5, "nonlinear_blur": 5e-5, "hdr": 2e-5}
DAPS_2025 = {"nonlinear_blur": (1e-5, 200)}  # (lr, Langevin steps) where the 2025 release changed them


@pytest.mark.parametrize("task", [t for t in TASKS if t != "denoising"])
def test_baseline_sections_hold_the_released_values(task):
    preset = load_preset(task)
    dps = sampler_settings(preset, "dps")
    if task in DPS_SCALE:
        assert dps == {"steps": 1000, "lr": DPS_SCALE[task], "variance": "learned_range"}
    else:  # no DPS release for this task: the class defaults, and the file says so
        assert dps == {}
        assert "DPS: no released configuration" in preset_path(task).read_text()
    daps = sampler_settings(preset, "daps")
    assert daps == {"steps": 200, "ode_steps": 5, "langevin_steps": 100, "lr": DAPS_LR[task], "tau": 0.01,
                    "lr_min_ratio": 0.01}
    lr25, lgv25 = DAPS_2025.get(task, (DAPS_LR[task], 100))
    assert sampler_settings(preset, "daps-2025") == {**daps, "lr": lr25, "langevin_steps": lgv25}


@pytest.mark.parametrize("task", TASKS)
def test_every_method_section_names_its_source(task):
    """A [methods.*] or [protocols.*] section is followed by a `# Source: repository @ commit, file` line."""
    text = preset_path(task).read_text()
    for header in re.findall(r"^\[(?:methods|protocols)\.[\w-]+\]$", text, flags=re.M):
        after = text.split(header + "\n", 1)[1].splitlines()[0]
        assert re.match(r"# Source: \S+/\S+ @ [0-9a-f]{7}", after), (task, header, after)


def test_protocols_change_the_measurement_only():
    spgd, dps, daps = (load_preset("inpainting_random", p) for p in PROTOCOLS)
    assert spgd["operator"] == {"drop": 0.8, "noise_sigma": 0.01}
    assert dps["operator"]["noise_sigma"] == daps["operator"]["noise_sigma"] == 0.05
    assert daps["operator"]["drop"] == 0.7
    assert [p["protocol"] for p in (spgd, dps, daps)] == list(PROTOCOLS)
    assert spgd["methods"] == daps["methods"] and spgd["sampler"] == daps["sampler"]
    # DPS has no HDR configuration: its protocol does not exist for that task
    with pytest.raises(SpgdError, match="no 'dps' protocol"):
        load_preset("hdr", "dps")
    with pytest.raises(SpgdError, match="unknown protocol 'x'"):
        load_preset("hdr", "x")


def test_override_precedence_released_then_bare_then_scoped():
    preset = load_preset("gaussian_blur")
    assert sampler_settings(preset, "dps")["lr"] == 0.3  # released
    bare = apply_overrides(preset, ["lr=2"], ["spgd", "dps"])
    assert sampler_settings(bare, "dps")["lr"] == 2 and sampler_settings(bare, "spgd")["lr"] == 2
    scoped = apply_overrides(preset, ["lr=2", "dps.lr=0.7"], ["spgd", "dps"])
    assert sampler_settings(scoped, "dps")["lr"] == 0.7 and sampler_settings(scoped, "spgd")["lr"] == 2
    assert sampler_settings(scoped, "daps")["lr"] == 2  # bare names reach every method that has them
