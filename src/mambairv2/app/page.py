"""The Gradio page: pick a model, upload images, restore them, compare before/after, download.

Gradio is imported here only (the ``[app]`` extra), after switching its telemetry off. The page
calls the library (:mod:`mambairv2.app.jobs`, which calls :func:`mambairv2.restore`); it shows
model names, never server paths, and serves no file but the results it made.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from .jobs import Options, UploadError
from .models import ModelStore, devices, dtypes
from .server import Settings

#: Largest upload Gradio accepts at all (checkpoints included); images have their own limit.
MAX_CHECKPOINT_MB = 1024
#: Jobs waiting in the queue beyond the running one; more are refused with a message.
QUEUE_SIZE = 16
#: System fonts only: the page needs no font server (the default theme loads web fonts).
FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
#status { min-height: 2.5em; }
#status p { margin: 0.2em 0; }
.hint p { font-size: 0.85em; opacity: 0.8; }
.gradio-container { max-width: 1400px !important; margin: auto; }
footer { display: none !important; }
"""
INTRO = """# MambaIRv2 — restore images on this machine
Super-resolution, denoising and JPEG artifact removal with
[MambaIRv2](https://arxiv.org/abs/2411.15269) (CVPR 2025). Images stay on this computer:
the page talks only to the local server that runs the model."""


def quiet_gradio() -> None:
    """No telemetry from Gradio or the Hugging Face client (set before importing them)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _warn(text: str) -> str:
    return f"⚠ {text}"


def build(settings: Settings, store: Optional[ModelStore] = None):
    """The page as a ``gradio.Blocks`` (not started; :func:`mount` adds its theme and style)."""
    quiet_gradio()
    import gradio as gr

    from ..checkpoint import CheckpointError

    store = store or ModelStore(settings.weights_dir)
    limits = settings.limits
    work = settings.work_dir or Path(tempfile.mkdtemp(prefix="mambairv2-app-"))
    if settings.work_dir is None:
        atexit.register(shutil.rmtree, work, True)
    work.mkdir(parents=True, exist_ok=True)
    device_choices = devices()

    def describe(name: Optional[str], device: str, dtype: str):
        """Model card and which simulation controls apply."""
        hide = (gr.update(visible=False), gr.update(visible=False))
        if not name:
            return ("No model available: put checkpoints in a folder and start the app with "
                    "`--weights-dir DIR`, or add one below.", *hide)
        try:
            from .models import model_info

            info = model_info(store.get(name, device, dtype))
        except (CheckpointError, KeyError, ValueError, RuntimeError) as exc:
            return _warn(store.without_paths(' '.join(str(exc).split()))), *hide
        return (info.describe(), gr.update(visible=info.task == "denoise"),
                gr.update(visible=info.task == "jpeg"))

    def add_checkpoint(file: Optional[str], device: str, dtype: str):
        """Validates an uploaded checkpoint and selects it; the upload box is emptied again."""
        keep = gr.update()
        if not file:
            return keep, keep, keep, keep, None
        original = Path(file).name
        if Path(file).suffix.lower() not in (".pth", ".safetensors"):
            return keep, _warn(f"{original}: a checkpoint is a .pth or .safetensors file"), keep, keep, None
        try:
            name = store.add_upload(Path(file), original)
        except (CheckpointError, RuntimeError, ValueError) as exc:
            # the loader names the file by its server path: show the uploaded name instead
            text = " ".join(str(exc).split()).replace(str(file), original)
            return keep, _warn(f"checkpoint refused: {text}"), keep, keep, None
        card, sigma_u, quality_u = describe(name, device, dtype)
        return gr.update(choices=store.names(), value=name), card, sigma_u, quality_u, None

    def run(files: Optional[List[str]], name: Optional[str], tile: float, ensemble: bool, device: str,
            dtype: str, simulate: bool, sigma: float, quality: float,
            progress=gr.Progress(track_tqdm=True)):
        from .jobs import read_upload, restore_upload, simulate_upload

        nothing = (None, None, None, None, [], gr.update(choices=[], value=None, visible=False))
        if not files:
            return (_warn("Upload one or more images first."), *nothing)
        if not name:
            return (_warn("Choose a model first."), *nothing)
        try:
            model = store.get(name, device, dtype)
        except (CheckpointError, KeyError, ValueError, RuntimeError) as exc:
            return (_warn(store.without_paths(' '.join(str(exc).split()))), *nothing)
        options = Options(tile=int(tile) if tile and tile > 0 else "auto", self_ensemble=bool(ensemble),
                          simulate=bool(simulate), sigma=float(sigma), quality=int(quality))
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work))
        lines, results = [], []
        with store.lock(name):
            for i, path in enumerate(files):
                shown = Path(path).name
                progress((i, len(files)), desc=f"image {i + 1}/{len(files)}: {shown}")
                try:
                    if options.simulate:
                        read_upload(path, shown, limits)  # the same limits before the protocol reads it
                        done = simulate_upload(model, path, shown, job_dir, options)
                    else:
                        done = restore_upload(model, read_upload(path, shown, limits), shown, job_dir, options)
                except UploadError as exc:
                    lines.append(_warn(str(exc)))
                    continue
                except (MemoryError, RuntimeError, ValueError) as exc:
                    text = " ".join(str(exc).split())[:200]
                    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
                        text = "out of memory; choose a smaller tile size"
                    lines.append(_warn(f"{shown}: {type(exc).__name__}: {text}"))
                    continue
                lines.append("✓ " + done.summary)
                results.append(done)
        if not results:
            return ("\n\n".join(lines), *nothing)
        first = results[0]
        picks = [r.download.name for r in results]
        gallery = [(r.name, r.before, r.after) for r in results]
        return ("\n\n".join(lines), (first.before, first.after), first.before, first.after,
                gallery, [str(r.download) for r in results],
                gr.update(choices=picks, value=picks[0], visible=len(results) > 1))

    def show(pick: Optional[str], gallery: list, downloads: Optional[List[str]]):
        names = [Path(p).name for p in (downloads or [])]
        if not pick or pick not in names or not gallery:
            return gr.update(), gr.update(), gr.update()
        _, before, after = gallery[names.index(pick)]
        return (before, after), before, after

    # uploads and results in Gradio's cache are deleted after an hour (checked every half hour)
    with gr.Blocks(title="MambaIRv2", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                model_dd = gr.Dropdown(store.names(), value=store.default_name(), label="Model",
                                       elem_id="model", interactive=True)
                card = gr.Markdown(elem_id="model-card")
                ckpt = gr.File(label="Add a checkpoint", file_count="single", elem_id="checkpoint", height=130)
                gr.Markdown("A `.pth` or `.safetensors` file, read as tensors only (no code in it runs); "
                            "its configuration is detected from the weights.", elem_classes=["hint"])
                with gr.Accordion("Options", open=True):
                    tile = gr.Slider(0, 1024, value=0, step=16, elem_id="tile", label="Tile size",
                                     info="input pixels per tile; 0 = automatic (whole image when it fits "
                                          "in memory)")
                    ensemble = gr.Checkbox(False, label="Self-ensemble (8 flips, 8× slower, a little better)",
                                           elem_id="ensemble")
                    with gr.Row():
                        device = gr.Dropdown(device_choices, value=device_choices[0], label="Device",
                                             elem_id="device")
                        dtype = gr.Dropdown(dtypes(device_choices[0]), value="float32", label="Precision",
                                            elem_id="dtype")
                with gr.Accordion("Compare against a clean image", open=False):
                    simulate = gr.Checkbox(False, elem_id="simulate",
                                           label="My uploads are clean: degrade them first (×s bicubic "
                                                 "downscale for SR, noise or JPEG for those models), "
                                                 "then restore and measure PSNR/SSIM")
                    sigma = gr.Slider(0, 75, value=25, step=1, label="Noise σ (0..255 scale)", visible=False,
                                      elem_id="sigma")
                    quality = gr.Slider(1, 100, value=10, step=1, label="JPEG quality", visible=False,
                                        elem_id="quality")
                gr.Markdown(f"Limits: {settings.max_upload_mb:g} MB per image, "
                            f"{settings.max_pixels:,} input pixels. One job runs at a time; "
                            f"others wait in a queue.", elem_id="limits")
            with gr.Column(scale=3):
                images = gr.File(label="Images (PNG, JPEG, BMP, TIFF, WebP; 16-bit and alpha are kept)",
                                 file_count="multiple", elem_id="images", height=120)
                go = gr.Button("Restore", variant="primary", elem_id="run")
                status = gr.Markdown(elem_id="status")
                slider = gr.ImageSlider(label="Before / after (drag the handle)", type="pil", format="png",
                                        elem_id="slider", interactive=False, max_height=640,
                                        buttons=["fullscreen"])
                pick = gr.Dropdown([], label="Result shown", visible=False, elem_id="pick")
                with gr.Row():
                    before_img = gr.Image(label="Input (at the output's zoom)", type="pil", format="png",
                                          interactive=False, elem_id="before", height=320,
                                          buttons=["fullscreen"])
                    after_img = gr.Image(label="Restored", type="pil", format="png", interactive=False,
                                         elem_id="after", height=320, buttons=["fullscreen"])
                downloads = gr.File(label="Download (PNG)", file_count="multiple", interactive=False,
                                    elem_id="downloads")
        gallery = gr.State([])

        demo.load(describe, [model_dd, device, dtype], [card, sigma, quality])
        model_dd.change(describe, [model_dd, device, dtype], [card, sigma, quality])
        device.change(lambda d: gr.update(choices=dtypes(d), value="float32"), device, dtype)
        ckpt.upload(add_checkpoint, [ckpt, device, dtype], [model_dd, card, sigma, quality, ckpt])
        go.click(run, [images, model_dd, tile, ensemble, device, dtype, simulate, sigma, quality],
                 [status, slider, before_img, after_img, gallery, downloads, pick],
                 concurrency_limit=1, concurrency_id="restore", api_name="restore")
        pick.change(show, [pick, gallery, downloads], [slider, before_img, after_img])
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def mount(settings: Settings, store: Optional[ModelStore] = None) -> Tuple[Any, Any, Callable[[], None]]:
    """The page (see :func:`build`) as an ASGI app to serve, its ``gradio.Blocks``, and what to call
    when the server stops (closes the queue and the page's event streams)."""
    quiet_gradio()
    import fastapi
    import gradio as gr

    demo = build(settings, store)
    max_mb = max(settings.max_upload_mb, MAX_CHECKPOINT_MB)
    # no API docs on the outer app either: the page is the only thing served
    outer = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app = gr.mount_gradio_app(outer, demo, path="/", server_name=settings.host, server_port=settings.port,
                              footer_links=[], show_error=False, max_file_size=f"{max_mb:g}mb",
                              ssr_mode=False, mcp_server=False, enable_monitoring=False, pwa=False,
                              theme=gr.themes.Soft(primary_hue="indigo", secondary_hue="slate", font=FONTS,
                                                   font_mono=MONO_FONTS),
                              css=CSS)
    inner = [route.app for route in app.routes if getattr(route, "app", None) is not None][-1]

    def stop() -> None:
        demo.close(verbose=False)  # the queue; demo.app is not set when mounted, so its streams:
        inner.stop_event.set()

    return app, demo, stop
