"""The page of `spgd app` (Gradio Blocks): widgets over spgd.app.jobs, which calls the pipelines. Imported only by
`spgd app` (Gradio is the optional extra ``spgd[app]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine

import gradio as gr  # noqa: E402 - after the environment above

from ..errors import SpgdError  # noqa: E402
from ..experiment.measurement import INPAINTING, KERNEL_TASKS  # noqa: E402
from .jobs import (  # noqa: E402
    APP_TASKS, DEFAULT_SIZE, DEFAULT_STEPS, MAX_SAMPLES, MODES, SIZES, Job, Request, Server, check_kernel, check_mask,
    check_photo, drawn_mask, methods_for,
)

TITLE = "spgd: restore images with a diffusion prior"
INTRO = """\
# spgd: image restoration with a diffusion prior
**Degrade a clean image and restore it** (scored against it), or **restore your own degraded photo** (any size;
no ground truth): pick the degradation, the methods to compare side by side, and run. Every run writes the
same run folders as `spgd eval` / `spgd restore` (download them below)."""
# fonts the machine has: no web font is fetched
THEME_FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = ("#status .error {color: #b91c1c; font-weight: 600} #status p {margin: 0.2em 0} "
       # a small image (a 64 px preview) fills its box, its pixels kept sharp
       "#preview img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated}")


def _error(e: BaseException) -> str:
    text = str(e) if isinstance(e, SpgdError) else f"{type(e).__name__}: {e}"
    return f'<p class="error">Error: {_escape(text)}</p>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mode_key(label: str) -> str:
    return next((k for k, v in MODES.items() if v == label), "degrade")


def build(server: Server) -> gr.Blocks:
    """The page; one run at a time (the queue and the server's lock)."""
    first_task = "gaussian_blur"
    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(INTRO)
        gr.Markdown(f"Running with {server.describe()}; runs go to `{server.out}`.", elem_id="server")
        photo_ok = gr.State(None)  # the last photo that was read: a bad upload puts it back
        with gr.Row():
            with gr.Column(scale=1):
                mode = gr.Radio(list(MODES.values()), value=MODES["degrade"], label="What to do", elem_id="mode")
                photo = gr.File(label="Clean image", type="filepath", elem_id="photo")
                photo_view = gr.Image(label="Image", interactive=False, elem_id="photo-view", height=256, format="png")
                editor = gr.ImageEditor(label="Paint the missing pixels (inpainting)", type="numpy",
                                        image_mode="RGBA", sources=[], visible=False, elem_id="mask-editor",
                                        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"), layers=False,
                                        transforms=[], height=320)
                with gr.Row():
                    kernel = gr.File(label="Blur kernel (.npy, .png, .pt): optional for gaussian_blur",
                                     type="filepath", elem_id="kernel")
                    mask_file = gr.File(label="Mask file (white = kept), instead of painting", type="filepath",
                                        visible=False, elem_id="mask-file")
                task = gr.Dropdown(list(APP_TASKS), value=first_task, label="Degradation (task)", elem_id="task")
                methods = gr.CheckboxGroup(methods_for(first_task), value=["spgd"], label="Methods, side by side "
                                           "(~: an approximate operator capability)", elem_id="methods")
                with gr.Row():
                    steps = gr.Number(DEFAULT_STEPS, label="Steps (every method)", precision=0, minimum=1,
                                      elem_id="steps")
                    seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="seed")
                    samples = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Samples (>= 2: mean and uncertainty)",
                                        elem_id="samples")
                size = gr.Radio([str(s) for s in SIZES], value=str(DEFAULT_SIZE), elem_id="size",
                                label="Work size: the clean image's longest side (pixels)")
                with gr.Accordion("More settings", open=False):
                    settings = gr.Textbox(label="key=value, one a line (as --set: lr=2, spgd.beta=0.5, "
                                          "noise_sigma=0.02, warmup_steps=2, ...)", lines=3, elem_id="settings")
                with gr.Row():
                    run = gr.Button("Run", variant="primary", elem_id="run")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
            with gr.Column(scale=1):
                status = gr.Markdown("Upload an image to start.", elem_id="status")
                preview = gr.Image(label="Current estimate x0_hat (live)", interactive=False, height=256,
                                   elem_id="preview", format="png")
                results = gr.Gallery(label="Results", columns=3, height="auto", format="png", elem_id="results",
                                     object_fit="contain")
                table = gr.Markdown(elem_id="table")
                angles = gr.Image(label="Gradient dynamics: angles between the likelihood and denoise steps",
                                  interactive=False, elem_id="angles", format="png")
                download = gr.File(label="The run folder (zip)", interactive=False, elem_id="download")

        # -- the widgets that depend on the mode and the task --------------------------------------------------
        def on_task(task_name: str, chosen: list[str]):
            choices = methods_for(task_name)
            names = [v for _, v in choices]
            keep = [m for m in (chosen or []) if m in names] or (["spgd"] if "spgd" in names else names[:1])
            inpaint = task_name in INPAINTING
            return (gr.update(choices=choices, value=keep), gr.update(visible=task_name in KERNEL_TASKS),
                    gr.update(visible=inpaint), gr.update(visible=inpaint), gr.update(visible=not inpaint))

        task.change(on_task, [task, methods], [methods, kernel, mask_file, editor, photo_view], api_visibility="private")

        def on_mode(label: str):
            degrade = _mode_key(label) == "degrade"
            return (gr.update(label="Clean image" if degrade else "Degraded photo (any size)"),
                    gr.update(visible=degrade))

        mode.change(on_mode, [mode], [photo, size], api_visibility="private")

        # -- uploads, checked as they arrive: a bad one is refused in the page and loses nothing -------------
        def on_photo(path: Optional[str], label: str, previous: Optional[str]):
            if not path:
                return gr.update(), gr.update(), gr.update(), previous, "Upload an image to start."
            try:
                text = check_photo(path, _mode_key(label))
            except SpgdError as e:
                return gr.update(value=previous), gr.update(), gr.update(), previous, _error(e)
            view = path if Path(path).suffix.lower() not in (".npy", ".pt") else None
            return (gr.update(), gr.update(value=view),
                    gr.update(value={"background": view, "layers": [], "composite": view}), path, _escape(text))

        photo.upload(on_photo, [photo, mode, photo_ok], [photo, photo_view, editor, photo_ok, status],
                     api_visibility="private")

        def checked_upload(check):
            def on_upload(path: Optional[str]):
                try:
                    return gr.update(), _escape(check(path))
                except SpgdError as e:
                    return gr.update(value=None), _error(e)
            return on_upload

        kernel.upload(checked_upload(check_kernel), [kernel], [kernel, status], api_visibility="private")
        mask_file.upload(checked_upload(check_mask), [mask_file], [mask_file, status], api_visibility="private")

        # -- the run ---------------------------------------------------------------------------------------------
        def on_run(label, photo_path, editor_value, kernel_path, mask_path, task_name, chosen, n_steps, n_seed,
                   n_samples, work_size, more, progress=gr.Progress()):
            try:
                request = Request(
                    mode=_mode_key(label), photo=photo_path, task=task_name, methods=list(chosen or []),
                    steps=int(n_steps) if n_steps else None, seed=int(n_seed or 0), samples=int(n_samples or 1),
                    size=int(work_size or DEFAULT_SIZE), kernel=kernel_path if task_name in KERNEL_TASKS else None,
                    mask=mask_path if task_name in INPAINTING else None,
                    painted=drawn_mask(editor_value) if task_name in INPAINTING else None, settings=more or "")
                request.check()
            except SpgdError as e:
                yield {status: _error(e)}
                return
            job = Job(server, request).start()
            try:
                progress(0.0, desc="starting")
                for update in job.updates():
                    progress(update.fraction, desc=update.text)
                    out: dict[Any, Any] = {status: _escape(update.text)}
                    if update.preview is not None:
                        out[preview] = update.preview
                    yield out
            finally:
                job.cancel()  # the page went away (or Stop): the worker stops at its next level
            if job.error is not None or job.outcome is None:
                yield {status: _error(job.error or SpgdError("the run ended without a result"))}
                return
            o = job.outcome
            text = (f"Done in {o.seconds:.1f} s: `{o.folder}`"
                    + "".join(f"<br>{_escape(n)}" for n in o.notes))
            yield {
                status: text,
                results: [(p.path, p.caption) for p in o.pictures],
                table: o.table(),
                angles: o.angles,
                download: str(o.zip),
            }

        run_event = run.click(
            on_run, [mode, photo_ok, editor, kernel, mask_file, task, methods, steps, seed, samples, size, settings],
            [status, preview, results, table, angles, download], concurrency_limit=1, concurrency_id="run",
            api_visibility="private", show_progress_on=[preview])
        stop.click(None, cancels=[run_event], api_visibility="private")
    return page


def launch(server: Server, host: str = "127.0.0.1", port: Optional[int] = None, quiet: bool = False,
           on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve the page until interrupted: only the app's own routes (no share link, no API page, no files
    outside the runs it made), uploads up to 100 MB, one run at a time (others wait in the queue). `on_ready`
    gets the page's address once it is served."""
    page = build(server)
    page.queue(default_concurrency_limit=1, max_size=32, api_open=False)
    try:
        page.launch(
            server_name=host, server_port=port, share=False, inbrowser=False, quiet=True, show_error=False,
            max_file_size="100mb", footer_links=[], ssr_mode=False, pwa=False, mcp_server=False,
            allowed_paths=[], theme=gr.themes.Default(**THEME_FONTS), css=CSS, enable_monitoring=False,
            prevent_thread_lock=True,
        )
    except OSError as e:  # the port is taken, or the address is not this machine's
        where = f"port {port}" if port else "a free port from 7860 to 7959"
        reason = "in use" if "empty port" in str(e) else first_line(str(e))
        raise SpgdError(f"cannot serve on {host}, {where}: {reason}; choose another with --port N "
                        "(--port 0: the first free one from 7860)") from None
    if on_ready is not None:
        on_ready(page.local_url or f"http://{host}:{port}/")
    try:
        page.block_thread()
    finally:
        page.close()


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
