"""`spgd methods`: every method, the code it matches, what it needs from an operator, and the benchmark tasks it
takes (exactly, approximately, or not)."""

from __future__ import annotations

import argparse

from ..errors import SpgdError
from ..operators import TASKS, make_operator
from ..operators.capabilities import CAPABILITIES
from ..samplers import METHODS
from ..samplers.catalog import SOURCES, Support, needs, operator_support
from .options import add_verbosity

HELP = "every method: the code it matches, what it needs from an operator, the tasks it takes"
DESCRIPTION = """\
List the methods with the release (repository @ commit) or paper each one matches, the operator capability it
needs beyond y = A(x) (an exact SVD for DDRM, a data-proximal solve for DiffPIR, a pseudo-inverse for PiGDM,
a linear operator for the classical baseline), and for each benchmark task (at its preset setting) whether the
method takes its operator: 'yes', '~' (a capability it needs is only an iterative approximation there) or '-'
(refused, with the reason below the table)."""
EXAMPLES = """\
examples:
  spgd methods
  spgd methods -v        # also every approximation and refusal in full"""

#: short column names of the tasks
SHORT = {"super_resolution": "SR", "gaussian_blur": "gblur", "motion_blur": "mblur", "inpainting_box": "box",
         "inpainting_random": "random", "phase_retrieval": "phase", "hdr": "hdr", "nonlinear_blur": "nlblur",
         "denoising": "denoise"}
MARK = {"yes": "yes", "approximate": "~", "no": "-"}


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_verbosity(parser)
    return parser


def benchmark_operators() -> dict:
    """Each task's operator at its benchmark setting (nonlinear blur, whose network weights are a user's file, by
    its class: it is not linear and offers no capability)."""
    ops = {}
    for task in TASKS:
        try:
            ops[task] = make_operator(task)
        except SpgdError:
            from ..operators import NonlinearBlur

            ops[task] = NonlinearBlur
    return ops


def support_table() -> dict[str, dict[str, Support]]:
    """method -> task -> Support."""
    ops = benchmark_operators()
    return {m: {t: operator_support(m, op) for t, op in ops.items()} for m in METHODS}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    table = support_table()
    name_w = max(len(m) for m in METHODS)
    need_w = 8
    header = f"{'method':<{name_w}}  {'needs':<{need_w}}  " + "  ".join(f"{SHORT[t]:>7}" for t in TASKS) + "  matches"
    print(header)
    print("-" * len(header))
    notes = []
    for m, row in table.items():
        need = ",".join(needs(m)) or "A"
        cells = "  ".join(f"{MARK[row[t].status]:>7}" for t in TASKS)
        print(f"{m:<{name_w}}  {need:<{need_w}}  {cells}  {SOURCES.get(m, ('', '-'))[1]}")
        for t in TASKS:
            if row[t].status != "yes":
                notes.append((m, t, row[t]))
    print()
    print("needs: A = the operator's forward alone (through autograd); "
          + "; ".join(f"{k} = {v[1]}" for k, v in CAPABILITIES.items()) + "; linear = adjoint or pseudo_inverse")
    print("yes = takes the task's operator exactly; ~ = an iterative approximation of what it needs; - = refused")
    shown = notes if args.verbose else _first_per_reason(notes)
    if shown:
        print()
        for m, t, s in shown:
            print(f"  {m} on {t}: {'approximate' if s.status == 'approximate' else 'refused'}: {s.detail}")
        if not args.verbose and len(shown) < len(notes):
            print(f"  ({len(notes) - len(shown)} more of the same reasons: spgd methods -v)")
    return 0


def _first_per_reason(notes: list) -> list:
    seen, out = set(), []
    for m, t, s in notes:
        key = (m, s.status, s.detail)
        if key not in seen:
            seen.add(key)
            out.append((m, t, s))
    return out
