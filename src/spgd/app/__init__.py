"""`spgd app`: a local web app over the same pipelines as the command line (spgd.experiment), nothing
re-implemented. Gradio is the optional extra ``pip install 'spgd[app]'``, imported only when the app starts:
`import spgd` and `import spgd.app` never import it.

- spgd.app.jobs: what a run asks for, the uploads checked, the pipeline calls in a worker thread with live
  progress, one run at a time, and what the page shows of their records (no Gradio);
- spgd.app.ui: the page (Gradio Blocks) and the server.

From Python: ``serve(Server(prior_name="default").load(), port=7860)``.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import SpgdError
from .jobs import Server

INSTALL_HINT = "pip install 'spgd[app]'  (from a clone: .venv/bin/pip install -e '.[app]')"


def require_gradio() -> None:
    """An SpgdError saying how to install the extra when Gradio is missing."""
    try:
        import gradio  # noqa: F401 - the check itself
    except ImportError as e:
        raise SpgdError(f"the web app needs Gradio, which is not installed ({e}); install it with: {INSTALL_HINT}") from None


def serve(server: Server, host: str = "127.0.0.1", port: Optional[int] = None, quiet: bool = False,
          on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve the app on host:port until interrupted (the prior of `server` loaded already); `on_ready` gets the
    page's address once it is served."""
    require_gradio()
    from .ui import launch  # Gradio: only now

    launch(server, host, port, quiet, on_ready)


__all__ = ["INSTALL_HINT", "Server", "require_gradio", "serve"]
