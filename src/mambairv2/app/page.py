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
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .guard import ClientFiles, Guard, Refused, allowed_hosts, client_of
from .jobs import Limits, Options, UploadError, decode_upload, page_tile, restore_upload, simulate_upload
from .models import CHECKPOINT_SUFFIXES, ModelStore, devices, dtypes, model_info
from .settings import Settings

#: Largest upload Gradio accepts at all (checkpoints included); images have their own limit.
MAX_CHECKPOINT_MB = 1024
#: Jobs waiting in the queue beyond the running one; more are refused with a message.
QUEUE_SIZE = 16
#: Clients whose last results the page can still switch between (their preview paths only);
#: the oldest client's are forgotten first.
KEPT_CLIENTS = 256
#: System fonts only: the page needs no font server (the default theme loads web fonts).
FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
#status { min-height: 2.5em; }
#status p { margin: 0.2em 0; }
.hint p { font-size: 0.85em; opacity: 0.8; }
.gradio-container { max-width: 1400px !important; margin: auto; }
footer { display: none !important; }
/* the upload boxes' floating labels sit over the drop area: room for them above its icon */
#checkpoint, #images { padding-top: 2.25em !important; }
"""
INTRO = """# MambaIRv2 — restore images on this machine
Super-resolution, denoising and JPEG artifact removal with
[MambaIRv2](https://arxiv.org/abs/2411.15269) (CVPR 2025). Images stay on this computer:
the page talks only to the local server that runs the model."""


#: the tile slider: minimum, maximum, step (0 = automatic)
TILE_SLIDER = (0, 1024, 16)


def quiet_gradio() -> None:
    """No telemetry from Gradio or the Hugging Face client (set before importing them)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _warn(text: str) -> str:
    return f"⚠ {text}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _client(request: Any) -> Optional[str]:
    """The client id (the Guard's cookie) of a Gradio request; None outside a request."""
    headers = getattr(request, "headers", None)
    return client_of(dict(headers)) if headers is not None else None


def _preview_file(image: Any, folder: Path, stem: str) -> str:
    """Writes a preview (a Pillow image) as a PNG in ``folder`` atomically; returns its path."""
    import io

    from ..utils.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return str(atomic_write_bytes(folder / f"{stem}.png", buffer.getvalue()))


class Handlers:
    """What the page's events do, without the layout. ``gr`` is the imported Gradio module
    (its ``update`` objects are the answers); models come from ``store``, results go to ``work``."""

    def __init__(self, gr: Any, store: ModelStore, limits: Limits, work: Path,
                 uploads: Optional[ClientFiles] = None) -> None:
        from ..models.checkpoint import CheckpointError

        self.gr, self.store, self.limits, self.work = gr, store, limits, work
        self.uploads = uploads or ClientFiles()
        self.model_errors = (CheckpointError, KeyError, ValueError, RuntimeError)
        # each client's last results (download name → preview paths), kept here rather than in
        # a gr.State: a State makes Gradio hold an event stream open for as long as the page is
        # (to free the State when the tab closes), so the page would never be idle
        self._shown: "OrderedDict[Optional[str], Dict[str, Tuple[str, str]]]" = OrderedDict()
        self._shown_lock = threading.Lock()

    def choices(self, client: Optional[str] = None):
        """The model names this client may choose (its own uploads, nobody else's)."""
        return self.gr.update(choices=self.store.names(client))

    def describe(self, name: Optional[str], device: str, dtype: str, client: Optional[str] = None):
        """Model card and which simulation controls apply (noise σ, JPEG quality)."""
        hide = (self.gr.update(visible=False), self.gr.update(visible=False))
        if not name:
            return ("No model available: put checkpoints in a folder and start the app with "
                    "`--weights-dir DIR`, or add one below.", *hide)
        try:
            info = model_info(self.store.get(name, device, dtype, owner=client))
        except self.model_errors as exc:
            return _warn(self.store.without_paths(_one_line(exc), client)), *hide
        return (info.describe(), self.gr.update(visible=info.task == "denoise"),
                self.gr.update(visible=info.task == "jpeg"))

    def add_checkpoint(self, file: Optional[str], device: str, dtype: str, client: Optional[str] = None):
        """Validates a checkpoint this client uploaded and selects it (for this client only);
        the upload box is emptied again."""
        keep = self.gr.update()
        if not file:
            return keep, keep, keep, keep, None
        original = Path(file).name
        if Path(file).suffix.lower() not in CHECKPOINT_SUFFIXES:
            return keep, _warn(f"{original}: a checkpoint is a .pth or .safetensors file"), keep, keep, None
        try:
            self.uploads.check_upload(client, file, original, int(MAX_CHECKPOINT_MB * 1e6))
            name = self.store.add_upload(Path(file), original, owner=client)
        except (Refused, *self.model_errors) as exc:
            # the loader names the file by its server path: show the uploaded name instead
            return keep, _warn(f"checkpoint refused: {_one_line(exc).replace(str(file), original)}"), keep, keep, None
        card, sigma_update, quality_update = self.describe(name, device, dtype, client)
        return (self.gr.update(choices=self.store.names(client), value=name), card, sigma_update, quality_update,
                None)

    def run(self, files: Optional[List[str]], name: Optional[str], tile: float, ensemble: bool, device: str,
            dtype: str, simulate: bool, sigma: float, quality: float, progress: Callable,
            client: Optional[str] = None):
        """Restores (or degrades, restores and scores) every upload: status text, the first result
        in the slider and side by side, all results, the downloads and the result picker."""
        nothing = (None, None, None, None, self.gr.update(choices=[], value=None, visible=False))
        if not files:
            return (_warn("Upload one or more images first."), *nothing)
        if not name:
            return (_warn("Choose a model first."), *nothing)
        try:
            model = self.store.get(name, device, dtype, owner=client)
        except self.model_errors as exc:
            return (_warn(self.store.without_paths(_one_line(exc), client)), *nothing)
        tile_used, note = page_tile(model, tile)
        options = Options(tile=tile_used, self_ensemble=bool(ensemble),
                          simulate=bool(simulate), sigma=float(sigma), quality=int(quality))
        with self.store.lock(name):
            lines, results = self._each(model, files, options, progress, client)
        if note:
            lines.insert(0, note)
        if not results:
            return ("\n\n".join(lines), *nothing)
        first = results[0]
        picks = [r.download.name for r in results]
        self._remember(client, {r.download.name: (r.before, r.after) for r in results})
        return ("\n\n".join(lines), (first.before, first.after), first.before, first.after,
                [str(r.download) for r in results],
                self.gr.update(choices=picks, value=picks[0], visible=len(results) > 1))

    def _remember(self, client: Optional[str], shown: Dict[str, Tuple[str, str]]) -> None:
        """Keeps ``client``'s last results (replacing its earlier ones), for :meth:`show`."""
        with self._shown_lock:
            self._shown.pop(client, None)
            self._shown[client] = shown
            while len(self._shown) > KEPT_CLIENTS:
                self._shown.popitem(last=False)

    def _each(self, model: Any, files: List[str], options: Options, progress: Callable,
              client: Optional[str]) -> Tuple[list, list]:
        """One status line per upload (a reason for each refused or failed one), and the results;
        a file is read only if this client uploaded it (see :class:`ClientFiles`)."""
        job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=self.work))
        lines, results = [], []
        for i, path in enumerate(files):
            shown = Path(path).name
            progress((i, len(files)), desc=f"image {i + 1}/{len(files)}: {shown}")
            try:
                data = self.uploads.open_upload(client, path, shown, self.limits.max_upload_bytes)
                upload = decode_upload(data, shown, self.limits)  # the limits hold when simulating too
                if options.simulate:
                    done = simulate_upload(model, path, shown, job_dir, options)
                else:
                    done = restore_upload(model, upload, shown, job_dir, options)
            except (UploadError, Refused) as exc:
                lines.append(_warn(str(exc)))
                continue
            except (MemoryError, RuntimeError, ValueError) as exc:
                text = _one_line(exc)[:200]
                if isinstance(exc, MemoryError) or "out of memory" in text.lower():
                    text = "out of memory; choose a smaller tile size"
                lines.append(_warn(f"{shown}: {type(exc).__name__}: {text}"))
                continue
            lines.append("✓ " + done.summary)
            # previews as files of this job: Gradio would write PIL images to one cache file per
            # content, rewritten by every identical job while another request serves it
            done.before = _preview_file(done.before, job_dir, f"before-{i}")
            done.after = _preview_file(done.after, job_dir, f"after-{i}")
            results.append(done)
        return lines, results

    def show(self, pick: Optional[str], client: Optional[str] = None):
        """The chosen result of this client's last run in the slider and side by side."""
        with self._shown_lock:
            found = self._shown.get(client, {}).get(pick or "")
        if found is None:
            return self.gr.update(), self.gr.update(), self.gr.update()
        before, after = found
        return (before, after), before, after


def _controls(gr: Any, settings: Settings, store: ModelStore) -> Dict[str, Any]:
    """The left column: model, checkpoint upload, options, simulation, limits."""
    c: Dict[str, Any] = {}
    device_choices = devices()
    c["model"] = gr.Dropdown(store.names(), value=store.default_name(), label="Model", elem_id="model",
                             interactive=True)
    c["card"] = gr.Markdown(elem_id="model-card")
    c["checkpoint"] = gr.File(label="Add a checkpoint", file_count="single", elem_id="checkpoint", height=130)
    gr.Markdown("A `.pth` or `.safetensors` file, read as tensors only (no code in it runs); "
                "its configuration is detected from the weights.", elem_classes=["hint"])
    with gr.Accordion("Options", open=True):
        c["tile"] = gr.Slider(minimum=TILE_SLIDER[0], maximum=TILE_SLIDER[1], step=TILE_SLIDER[2], value=0, elem_id="tile", label="Tile size",
                              info="input pixels per tile; 0 = automatic (whole image when it fits in memory); "
                                   "below the model's smallest tile (48 for MambaIRv2), the smallest")
        c["ensemble"] = gr.Checkbox(False, label="Self-ensemble (8 flips, 8× slower, a little better)",
                                    elem_id="ensemble")
        with gr.Row():
            c["device"] = gr.Dropdown(device_choices, value=device_choices[0], label="Device", elem_id="device")
            c["dtype"] = gr.Dropdown(dtypes(device_choices[0]), value="float32", label="Precision",
                                     elem_id="dtype")
    with gr.Accordion("Compare against a clean image", open=False):
        c["simulate"] = gr.Checkbox(False, elem_id="simulate",
                                    label="My uploads are clean: degrade them first (×s bicubic downscale for "
                                          "SR, noise or JPEG for those models), then restore and measure PSNR/SSIM")
        c["sigma"] = gr.Slider(0, 75, value=25, step=1, label="Noise σ (0..255 scale)", visible=False,
                               elem_id="sigma")
        c["quality"] = gr.Slider(1, 100, value=10, step=1, label="JPEG quality", visible=False, elem_id="quality")
    gr.Markdown(f"Limits: {settings.max_upload_mb:g} MB per image, {settings.max_pixels:,} input pixels. "
                "One job runs at a time; others wait in a queue.", elem_id="limits")
    return c


def _results(gr: Any) -> Dict[str, Any]:
    """The right column: uploads, the Restore button, status, before/after views, downloads."""
    c: Dict[str, Any] = {}
    c["images"] = gr.File(label="Images (PNG, JPEG, BMP, TIFF, WebP; 16-bit and alpha are kept)",
                          file_count="multiple", elem_id="images", height=120)
    c["run"] = gr.Button("Restore", variant="primary", elem_id="run")
    c["status"] = gr.Markdown(elem_id="status")
    c["slider"] = gr.ImageSlider(label="Before / after (drag the handle)", type="pil", format="png",
                                 elem_id="slider", interactive=False, max_height=640, buttons=["fullscreen"])
    c["pick"] = gr.Dropdown([], label="Result shown", visible=False, elem_id="pick")
    with gr.Row():
        c["before"] = gr.Image(label="Input (at the output's zoom)", type="pil", format="png",
                               interactive=False, elem_id="before", height=320, buttons=["fullscreen"])
        c["after"] = gr.Image(label="Restored", type="pil", format="png", interactive=False, elem_id="after",
                              height=320, buttons=["fullscreen"])
    c["downloads"] = gr.File(label="Download (PNG)", file_count="multiple", interactive=False,
                             elem_id="downloads")
    return c


def _work_dir(settings: Settings) -> Path:
    """The folder of this app's results and of Gradio's cache (uploads included), removed when
    the process exits unless the user chose it."""
    work = settings.work_dir or Path(tempfile.mkdtemp(prefix="mambairv2-app-"))
    if settings.work_dir is None:
        atexit.register(shutil.rmtree, work, True)
    work.mkdir(parents=True, exist_ok=True)
    return work


def build(settings: Settings, store: Optional[ModelStore] = None, uploads: Optional[ClientFiles] = None,
          work: Optional[Path] = None):
    """The page as a ``gradio.Blocks`` (not started; :func:`mount` adds its theme and style)."""
    quiet_gradio()
    import gradio as gr

    store = store or ModelStore(settings.weights_dir)
    work = work or _work_dir(settings)
    on = Handlers(gr, store, settings.limits, work, uploads or ClientFiles())

    # Gradio passes the request (for the client id) and a progress bar to these arguments
    def run(files, name, tile, ensemble, device, dtype, simulate, sigma, quality, request: gr.Request,
            progress=gr.Progress(track_tqdm=True)):
        return on.run(files, name, tile, ensemble, device, dtype, simulate, sigma, quality, progress,
                      _client(request))

    def describe(name, device, dtype, request: gr.Request):
        return on.describe(name, device, dtype, _client(request))

    def add_checkpoint(file, device, dtype, request: gr.Request):
        return on.add_checkpoint(file, device, dtype, _client(request))

    def choices(request: gr.Request):
        return on.choices(_client(request))

    def show(pick, request: gr.Request):
        return on.show(pick, _client(request))

    for handler in (run, describe, add_checkpoint, choices, show):
        # Gradio finds the request argument by its annotation, which must be the class itself
        # (this module's annotations are strings)
        handler.__annotations__["request"] = gr.Request

    # uploads and results in Gradio's cache are deleted after an hour (checked every half hour)
    with gr.Blocks(title="MambaIRv2", analytics_enabled=False, delete_cache=(1800, 3600)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=300):
                c = _controls(gr, settings, store)
            with gr.Column(scale=3):
                c.update(_results(gr))
        model = [c["model"], c["device"], c["dtype"]]
        card = [c["card"], c["sigma"], c["quality"]]
        views = [c["slider"], c["before"], c["after"]]
        demo.load(choices, None, c["model"])
        demo.load(describe, model, card)
        c["model"].change(describe, model, card)
        c["device"].change(lambda d: gr.update(choices=dtypes(d), value="float32"), c["device"], c["dtype"])
        c["checkpoint"].upload(add_checkpoint, [c["checkpoint"], c["device"], c["dtype"]],
                               [c["model"], *card, c["checkpoint"]])
        # the last run's warning goes as the new run starts, not when it ends
        c["run"].click(lambda: "", None, c["status"], queue=False, show_progress="hidden", api_name=False)
        # one progress display (the status line), not one over every panel the run fills
        c["run"].click(run, [c["images"], c["model"], c["tile"], c["ensemble"], c["device"], c["dtype"],
                             c["simulate"], c["sigma"], c["quality"]],
                       [c["status"], *views, c["downloads"], c["pick"]],
                       concurrency_limit=1, concurrency_id="restore", api_name="restore",
                       show_progress_on=[c["status"]])
        c["pick"].change(show, c["pick"], views)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def mount(settings: Settings, store: Optional[ModelStore] = None) -> Tuple[Any, Callable[[], None]]:
    """The page (see :func:`build`) as an ASGI app to serve, and what to call when the server
    stops (closes the page's queue and event streams)."""
    work = _work_dir(settings)
    # Gradio's cache (uploads, served results) inside the work folder: private to this app,
    # removed with it; read by Gradio on import (which makes the folder), when the page is built
    # and on every upload
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    quiet_gradio()
    import fastapi
    import gradio as gr

    uploads = ClientFiles()
    demo = build(settings, store, uploads, work)
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
    # mount_gradio_app never marks the page as launched, which leaves Gradio's check of the paths
    # a request names (only files of its upload folder) unarmed
    demo.has_launched = True
    # results are written in the work folder, which need not be under the system's temporary folder
    demo.allowed_paths = [str(work)]
    guarded = Guard(app, uploads, allowed_hosts(settings.host), served_root=str(work))

    def stop() -> None:
        demo.close(verbose=False)  # the queue; demo.app is not set when mounted, so its streams:
        inner.stop_event.set()

    return guarded, stop
