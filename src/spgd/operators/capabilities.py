"""What a method may ask of an operator beyond y = A(x): optional capabilities, each one method of the operator.

A capability is asked for by name by the methods that need it; an operator without it is refused in one line
naming what is missing. A user's own operator opts in by defining the method (no subclassing needed).

- ``svd(x_shape) -> SVD | list[SVD]`` (DDRM): an exact singular value decomposition A = U diag(s) V^T, for a
  batch of unknowns of shape ``x_shape`` (B, ...): one `SVD` shared by the batch, or a list of B (one per image,
  e.g. a mask per image).
- ``prox(z, y, rho) -> x`` (DiffPIR): the data-proximal step x = argmin_x ||y - A x||^2 + rho ||x - z||^2, rho a
  float or a (B,) tensor, per image.
- ``pinv(y) -> x`` (PiGDM): the pseudo-inverse A^+ y (exact from the SVD where there is one).
- ``observed(x) -> mask`` (optional, PiGDM): 1 on the entries of x that y measures directly (A^+ A = I there), 0
  elsewhere; where an operator offers it (inpainting), PiGDM's release projects x0_hat onto y there. Nothing is
  refused for lacking it.

An operator may say how it computes `prox` and `pinv` in ``prox_kind`` / ``pinv_kind`` ("closed form",
"SVD", "FFT", or "conjugate gradients, ..." for an iterative solve): `describe` reads them for tables and
`spgd methods`.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

from torch import Tensor

from ..errors import SpgdError


@runtime_checkable
class SVD(Protocol):
    """A = U diag(s) V^T for the images it serves.

    Unknowns x are (N, *x_shape) with D = prod(x_shape) entries each; spectral vectors V^T x are (N, D), their first
    L entries paired with the singular values (L = len(singulars())) and the rest spanning the null space.
    Measurements y are (N, *y_shape); U^T y is (N, L). The bases are orthonormal: V(Vt(x)) = x, U(Ut(y)) = y, and
    A(x) = U(singulars() * Vt(x)[:, :L]).
    """

    def singulars(self) -> Tensor:
        """The singular values s (L,), in the order of the first L spectral entries (zeros allowed)."""

    def Vt(self, x: Tensor) -> Tensor:
        """(N, *x_shape) -> (N, D)."""

    def V(self, v: Tensor) -> Tensor:
        """(N, D) -> (N, *x_shape)."""

    def Ut(self, y: Tensor) -> Tensor:
        """(N, *y_shape) -> (N, L)."""

    def U(self, u: Tensor) -> Tensor:
        """(N, L) -> (N, *y_shape)."""


#: capability -> (operator method, what it is, the methods that ask for it)
CAPABILITIES = {
    "svd": ("svd", "an exact singular value decomposition (svd(x_shape))", "ddrm"),
    "prox": ("prox", "a data-proximal solve (prox(z, y, rho))", "diffpir"),
    "pinv": ("pinv", "a pseudo-inverse (pinv(y))", "pigdm"),
}


def require(operator, capability: str, method: str) -> None:
    """Raise SpgdError (one line) unless `operator` offers `capability` (a key of CAPABILITIES)."""
    name, what, _ = CAPABILITIES[capability]
    if not offers(operator, capability):
        reason = getattr(operator, f"no_{name}_reason", None)
        why = f": {reason}" if reason else ""
        raise SpgdError(
            f"{method} needs an operator with {what}; {type(operator).__name__} has none{why} "
            f"(`spgd methods` lists the operators each method takes)"
        )


def offers(operator, capability: str) -> bool:
    """Whether `operator` offers `capability`: it has the method, and does not say otherwise with an empty
    `<name>_kind` (an operator whose capability depends on its settings, e.g. a blur's SVD on a separable kernel)."""
    name = CAPABILITIES[capability][0]
    return callable(getattr(operator, name, None)) and getattr(operator, f"{name}_kind", None) != ""


def batch_svds(operator, x_shape: Sequence[int], method: str = "ddrm") -> list:
    """The SVD of each image of a batch of shape `x_shape`: operator.svd(x_shape) as a list of B."""
    require(operator, "svd", method)
    svd = operator.svd(tuple(x_shape))
    batch = int(x_shape[0])
    if isinstance(svd, (list, tuple)):
        if len(svd) != batch:
            raise SpgdError(f"{type(operator).__name__}.svd returned {len(svd)} decompositions for a batch of {batch}")
        return list(svd)
    return [svd] * batch


def describe(operator) -> dict[str, str]:
    """How `operator` offers each capability ("" where it does not), e.g. {"svd": "exact", "prox": "closed form",
    "pinv": "SVD"}."""
    out = {}
    for key, (name, _, _) in CAPABILITIES.items():
        if not offers(operator, key):
            out[key] = ""
        else:
            out[key] = str(getattr(operator, f"{name}_kind", "exact" if key == "svd" else "given"))
    return out
