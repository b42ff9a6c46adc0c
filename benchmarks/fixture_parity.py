"""Print how closely each released sampler replays its authors' recorded runs (every file of
../shared/fixtures/reference-ddrm, reference-diffpir and reference-reddiff-pigdm), and how far a deliberately wrong
rule lands: the numbers behind the parity tests of tests/samplers/ (which assert them), printed as a table.

It reuses the tests' replay helpers (the same runs the tests make).

Usage: python benchmarks/fixture_parity.py [SHARED_DIR]   (default ../shared)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "samplers"))

import test_ddrm as ddrm  # noqa: E402
import test_diffpir as diffpir  # noqa: E402
import test_pigdm as pigdm  # noqa: E402
import test_reddiff as reddiff  # noqa: E402
from replay import RedDiffDeblur, fixture_network, reddiff_fixture_operator, rel  # noqa: E402


def worst(trace, key, ref_steps):
    return max(rel(t[key] if isinstance(t, dict) else t, ref_steps[i]) for i, t in enumerate(trace))


def main(argv: list[str]) -> int:
    shared = Path(argv[0]) if argv else ROOT.parent / "shared"
    torch.set_num_threads(1)
    prior = fixture_network(shared)
    fx = shared / "fixtures"
    print("| method | fixture file | operator | rel. error of `final` | worst recorded step | wrong rule | its miss on `final` |")
    print("|---|---|---|---|---|---|---|")

    for name in ("inpainting_random", "super_resolution_x4", "deblur_gauss"):
        ref = ddrm.load(fx / "reference-ddrm", name)
        op = ddrm.fixture_operator(name, ref)
        result, trace, _ = ddrm.replay_run(ref, prior, op)
        steps = worst(trace, "x", ref["xs"][1:])
        wrong, _, _ = ddrm.replay_run(ref, prior, op, eta=0.5)
        print(f"| ddrm | ddrm_{name} | {type(op).__name__} | {rel(result.x, ref['final']):.2e} | {steps:.2e} | "
              f"eta = 0.5 | {rel(wrong.x, ref['final']):.2e} |")

    for name in ("diffpir_inpainting_random", "diffpir_deblur_gaussian", "diffpir_sisr_x4"):
        ref = diffpir.load(fx / "reference-diffpir", name)
        result, trace, _ = diffpir.run_file(ref, name, prior)
        steps = worst(trace[:-1], "x", ref["xt"])
        zeta = {"diffpir_inpainting_random": 0.9, "diffpir_deblur_gaussian": 0.35, "diffpir_sisr_x4": 0.3}[name]
        wrong, _, _ = diffpir.run_file(ref, name, prior, zeta=zeta)
        op = diffpir.problem(ref, name)[1]
        print(f"| diffpir | {name} | {type(getattr(op, 'op', op)).__name__} | {rel(result.x, ref['final']):.2e} | "
              f"{steps:.2e} | zeta = {zeta} | {rel(wrong.x, ref['final']):.2e} |")

    rp = fx / "reference-reddiff-pigdm"
    for name in ("pigdm_inpainting_random", "pigdm_deblur_gauss"):
        ref = pigdm.load(rp, name)
        op, y = reddiff_fixture_operator(ref)
        result, trace, _ = pigdm.run_pigdm(ref, prior, op, y)
        steps = max(rel(t, ref["xt"][i]) for i, t in enumerate(trace))
        if "mask" in ref:
            label, wrong = "no projection (project=False)", pigdm.run_pigdm(ref, prior, op, y, project=False)[0]
        else:
            label, wrong = "the intended s_i s_j layout", pigdm.run_pigdm(ref, prior, RedDiffDeblur(ref, True), y)[0]
        print(f"| pigdm | {name} | {type(op).__name__} | {rel(result.x, ref['final']):.2e} | {steps:.2e} | {label} | "
              f"{rel(wrong.x, ref['final']):.2e} |")

    for name in ("reddiff_inpainting_random", "reddiff_deblur_gauss"):
        ref = reddiff.load(rp, name)
        op, y = reddiff_fixture_operator(ref)
        result, trace, _ = reddiff.run_reddiff(ref, prior, op, y)
        steps = max(rel(t, ref["mu"][i]) for i, t in enumerate(trace))
        wrong = reddiff.run_reddiff(ref, prior, op, y, output="mu")[0]
        print(f"| reddiff | {name} | {type(op).__name__} | {rel(result.x, ref['final']):.2e} | {steps:.2e} | "
              f"output = mu (the paper's) | {rel(wrong.x, ref['final']):.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
