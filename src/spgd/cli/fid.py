"""`spgd fid`: FID and KID of two image folders or statistics files."""

from __future__ import annotations

import argparse
import json

from ..experiment.fid import FidPlan, fid
from ..metrics.inception import RESIZE_MODES
from .options import EXIT_OK, add_device, add_verbosity, console

HELP = "FID and KID of two image folders (local weights)"
DESCRIPTION = """\
FID (pytorch-fid's Inception-v3 features, Fréchet distance in float64) and KID (unbiased, polynomial kernel)
between two sets of images: SET_A and SET_B are folders of images or .npz statistics files. With one folder
and --save-stats, only its statistics are computed and cached (as EDM's `fid.py ref`)."""
EXAMPLES = (
    "examples:\n"
    "  spgd fid restored/ clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth\n"
    "  spgd fid clean/ --fid-weights pt_inception-2015-12-05-6726825d.pth --save-stats clean.npz\n"
    "  spgd fid restored/ clean.npz --fid-weights pt_inception-2015-12-05-6726825d.pth --json"
)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd fid`."""
    parser.add_argument("sets", nargs="+", metavar="SET", help="SET_A [SET_B]: folders of images or .npz files")
    parser.add_argument("--fid-weights", required=True, metavar="FILE",
                        help="pt_inception-2015-12-05-6726825d.pth, the Inception weights of pytorch-fid and "
                        "torch-fidelity (never downloaded)")
    parser.add_argument("--resize", choices=RESIZE_MODES, default="pytorch-fid",
                        help="whose resizing to 299x299 and normalisation to use (default: %(default)s)")
    parser.add_argument("--save-stats", metavar="OUT.npz", default=None,
                        help="write the statistics (and features) of the last folder given, for later runs")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per batch (default: 16)")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_verbosity(parser)
    return parser


def run(args: argparse.Namespace, argv: list[str]) -> int:
    plan = FidPlan(list(args.sets), args.fid_weights, resize=args.resize, save_stats=args.save_stats,
                   batch_size=args.batch_size, device=args.device)
    record = fid(plan, console(args))
    if record.saved is not None:
        print(f"statistics of {record.saved['n']} image(s) in {record.saved['set']} written to {record.saved['path']}")
    if record.scores is None:
        return EXIT_OK
    out, names = record.scores, plan.sets
    if args.json:
        print(json.dumps(out, indent=2))
        return EXIT_OK
    print(f"FID {out['fid']:.4f} ({names[0]}: {out['n_a'] or '?'} image(s), {names[1]}: {out['n_b'] or '?'})")
    if out["kid"] is not None:
        k = out["kid"]
        print(f"KID {k['mean']:.6f} ± {k['std']:.6f} ({k['subsets']} subset(s))")
    else:
        print("KID not computed: a statistics file without features (write it with spgd fid --save-stats)")
    if out["warning"]:
        print(f"note: {out['warning']}")
    return EXIT_OK
