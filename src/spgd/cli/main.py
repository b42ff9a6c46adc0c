"""The `spgd` command: one module per command (spgd.cli.restore, .evaluate, .demo, .train, .diagnose, .bench,
.fid, .sweep, .models, .methods, .app), each with HELP (its line in `spgd --help`), DESCRIPTION and EXAMPLES (its `--help` text),
`add_arguments(parser)` and `run(args, argv)` (with RENAMES where a Python parameter has another name than its
option); the options they share are declared once in spgd.cli.options. The work is in the experiment layer
(spgd.experiment) and the library, whose errors name Python parameters: they are printed in the command's
flags (spgd.cli.options.cli_words).

Exit codes (spgd.cli.options): 0 success; 1 some images failed (diverged); 2 bad input or another error (one
line ``spgd: error: ...`` on stderr, a traceback only with -v or SPGD_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Any, Optional, Sequence

from .. import __version__
from ..errors import SpgdError
from ..experiment.console import Console
from . import app, bench, demo, diagnose, evaluate, fid, methods, models, restore, sweep, train
from .options import EXIT_ERROR, EXIT_INTERRUPTED, Parser, apply_thread_rule, cli_words, parser_flags

# the commands in the order `spgd --help` lists them
COMMANDS = {"restore": restore, "eval": evaluate, "demo": demo, "train": train, "diagnose": diagnose,
            "bench": bench, "fid": fid, "sweep": sweep, "models": models, "methods": methods, "app": app}

# the commands that compute on the CPU (their torch thread count follows spgd.device.choose_threads)
COMPUTING = ("restore", "eval", "demo", "train", "diagnose", "bench", "fid", "sweep", "app")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="spgd",
        description="Diffusion-model image restoration with SPGD (Stabilized Progressive Gradient Diffusion) "
        "and its baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  spgd demo                                   # restore the bundled photo (minutes on a CPU)\n"
        "  spgd restore blurry.png --task gaussian_blur --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "  spgd eval faces/ --task super_resolution --prior ffhq256 --checkpoint ffhq_10m.pt\n"
        "run 'spgd COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"spgd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION, epilog=command.EXAMPLES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(p)
    return parser


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        if args.command in COMPUTING:
            args.thread_rule = apply_thread_rule(args)  # a busy machine gets fewer threads (spgd.device.choose_threads), said once
        return int(command.run(args, argv) or 0)
    except SpgdError as e:  # in the words of the command line
        parser = Parser(prog=f"spgd {args.command}")
        command.add_arguments(parser)
        raise SpgdError(cli_words(str(e), parser_flags(parser, getattr(command, "RENAMES", None)))) from e


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    Console().warn(str(message))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the `spgd` command with `argv` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("SPGD_DEBUG", "") not in ("", "0") or "-v" in argv or "--verbose" in argv
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return _run(argv)
        except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
            return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
        except KeyboardInterrupt:
            print("spgd: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (SpgdError, OSError) as e:
            if debug:
                traceback.print_exc()
            print(f"spgd: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as e:  # noqa: BLE001 - a bug, but still no traceback unless asked
            if debug:
                traceback.print_exc()
            hint = "" if debug else " (run with -v or SPGD_DEBUG=1 for the traceback)"
            print(f"spgd: error: {type(e).__name__}: {_one_line(e)}{hint}", file=sys.stderr)
            return EXIT_ERROR


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.strerror or type(e).__name__}: {e.filename}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
