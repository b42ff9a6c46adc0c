"""What each method is, which code it matches, and which operators it takes (`spgd methods`, the README's table).

A method's needs beyond y = A(x) are the operator capabilities of spgd.operators.capabilities, declared by its
sampler class in `needs` (DDRM: an SVD; DiffPIR: a data-proximal solve; PiGDM: a pseudo-inverse); the classical
baseline needs a linear operator. The others use A alone, through autograd where they take its gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpgdError
from ..operators.capabilities import CAPABILITIES, describe, offers

#: method -> (what it is, what it matches: a release @ commit, or the paper)
SOURCES: dict[str, tuple[str, str]] = {
    "spgd": ("SPGD: likelihood warm-up with adaptive directional momentum, then a probability-flow Euler step",
             "the paper's algorithm (Wu et al., arXiv 2507.06656)"),
    "spgd-official": ("SPGD as the authors released it (raw-gradient warm-up, reused x0_hat, per-pixel cosine)",
                      "the authors' public code (../shared/fixtures/reference-spgd), 1e-4"),
    "spgd-no-warmup": ("ablation: one likelihood step per level", "this project"),
    "spgd-no-momentum": ("ablation: beta = 0", "this project"),
    "spgd-pixel-cosine": ("ablation: the release's per-pixel channel cosine", "this project"),
    "spgd-reused-denoise": ("ablation: the release's reused x0_hat", "this project"),
    "dps": ("DPS: ancestral DDPM with a gradient step on ||y - A(x0_hat)|| through the network",
            "DPS2022/diffusion-posterior-sampling @ effbde7"),
    "daps": ("DAPS: decoupled annealing, an ODE to x0_hat, Langevin on x0, re-noise",
             "zhangbingliang2019/DAPS @ 25471a8 (2024, the paper's code)"),
    "daps-2025": ("DAPS, the current release", "zhangbingliang2019/DAPS @ 098df6b"),
    "ddrm": ("DDRM: closed-form posterior steps in the operator's SVD basis, no gradients",
             "bahjat-kawar/ddrm @ 32b6b3c"),
    "diffpir": ("DiffPIR: a data-proximal step on x0_hat, then DDIM-like re-noising",
                "yuanzhi-zhu/DiffPIR @ 111d26e"),
    "pigdm": ("PiGDM: pseudo-inverse guidance through the network's Jacobian, DDIM steps",
              "NVlabs/RED-diff @ 66482f2 (algos/pgdm.py; there is no official code)"),
    "reddiff": ("RED-diff: Adam on the variational mean, data fit plus the network's score as a regulariser",
                "NVlabs/RED-diff @ 66482f2 (algos/reddiff.py)"),
    "classical": ("prior-free: Tikhonov-CG deconvolution / bicubic up-sampling / biharmonic fill", "-"),
}


@dataclass(frozen=True)
class Support:
    """Whether a method takes an operator: status "yes", "approximate" (a capability it needs is an iterative
    solve) or "no", with the reason."""

    status: str
    detail: str = ""


def needs(method: str) -> tuple[str, ...]:
    """The operator capabilities `method` asks for (keys of CAPABILITIES, or "linear" for the classical baseline)."""
    from . import METHODS  # the registry imports this module's users, not the other way round

    return tuple(getattr(METHODS[method][0], "needs", ()))


def operator_support(method: str, operator) -> Support:
    """Whether `method` can run on `operator`, and how well: exactly, with an approximate capability, or not."""
    approximate = []
    for need in needs(method):
        if need == "linear":
            if not (callable(getattr(operator, "adjoint", None)) or callable(getattr(operator, "pseudo_inverse", None))):
                return Support("no", "needs a linear operator (adjoint or pseudo_inverse)")
            continue
        if not offers(operator, need):
            reason = getattr(operator, f"no_{CAPABILITIES[need][0]}_reason", "")
            if not getattr(operator, "linear", False):
                reason = "the operator is not linear"
            return Support("no", f"needs {CAPABILITIES[need][1]}" + (f": {reason}" if reason else ""))
        kind = describe(operator)[need]
        if "approximate" in kind:
            approximate.append(f"{need} by {kind}")
    if approximate:
        return Support("approximate", "; ".join(approximate))
    return Support("yes")


def require_support(methods, operator) -> None:
    """Raise SpgdError (one line) if a method cannot take `operator` at all (status "no"), before any work."""
    for method in methods:
        support = operator_support(method, operator)
        if support.status == "no":
            raise SpgdError(f"{method} cannot restore with {type(operator).__name__}: it {support.detail} "
                            f"(`spgd methods` lists the operators each method takes)")
