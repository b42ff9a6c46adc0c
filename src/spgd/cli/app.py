"""`spgd app`: the local web app (the optional extra spgd[app])."""

from __future__ import annotations

import argparse

from ..app import Server, require_gradio, serve
from .options import EXIT_OK, add_device, add_network_options, add_output, add_prior, apply_no_fast, console

HELP = "a local web app: degrade and restore an image, or restore your own photo, in the browser"
DESCRIPTION = """\
Serve a web page (Gradio; install the extra: pip install 'spgd[app]') on http://HOST:PORT: upload a clean image
to degrade and restore it (PSNR/SSIM against it), or your own degraded photo of any size (a blur kernel file, or
the missing pixels painted with a brush or a mask file); compare methods side by side with live progress, the
gradient-angle plot and the cost, and download the run folder it wrote (the same as spgd eval / spgd restore).
The prior is chosen here, once. One run at a time; others wait in the queue."""
EXAMPLES = """\
examples:
  spgd app                                          # the bundled prior, http://127.0.0.1:7860
  spgd app --prior ffhq256 --checkpoint ffhq_10m.pt --device cuda
  spgd app --port 8080 --out app-runs
notes: --host 0.0.0.0 serves every network interface: only do that on a network you trust (there is no login)."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `spgd app`."""
    add_prior(p)
    add_network_options(p)
    add_device(p)
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="the address to serve on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=7860, metavar="N",
                   help="the port (default: %(default)s; 0: the first free port from 7860)")
    add_output(p)  # --out: every run of the page gets a new run folder there
    return p


def run(args: argparse.Namespace, argv: list[str]) -> int:
    con = console(args)
    apply_no_fast(args)
    require_gradio()  # before the prior loads: the fix is an install
    server = Server(args.prior, args.checkpoint, args.class_label, args.device, args.out).load()
    con.info(f"spgd app: {server.describe().replace('**', '')}; runs go to {server.out}")
    serve(server, args.host, args.port or None, quiet=con.level < 2,
          on_ready=lambda url: con.result(f"open {url} in a browser (Ctrl+C stops the server)"))
    return EXIT_OK
