"""Jobs sent to the page at the same time run one after the other (a queue), and both finish."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

import mambairv2
from mambairv2.utils.imageio import ImageData, encode_image

pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*(no_silent_downcasting|copy keyword)")


def test_simultaneous_jobs_are_queued_one_at_a_time(tmp_path):
    from gradio_client import Client, handle_file

    from mambairv2.app.models import ModelStore
    from mambairv2.app.server import launch
    from mambairv2.app.settings import Settings

    weights = tmp_path / "weights"
    weights.mkdir()
    model = mambairv2.create_model("light", scale=2, embed_dim=12, depths=(1,), num_heads=(2,), d_state=4,
                                   inner_rank=4, num_tokens=6).eval()
    mambairv2.save_safetensors(model, weights / "tiny.safetensors")
    state = {"active": 0, "most": 0, "calls": 0}
    guard = threading.Lock()

    class CountingStore(ModelStore):
        """Records how many forward passes run at once (each one lingers a little)."""

        def get(self, name, device="cpu", dtype="float32", owner=None):
            m = super().get(name, device, dtype, owner)
            if not getattr(m, "_counted", False):
                def enter(module, args):
                    with guard:
                        state["active"] += 1
                        state["calls"] += 1
                        state["most"] = max(state["most"], state["active"])
                    time.sleep(0.5)

                def leave(module, args, out):
                    with guard:
                        state["active"] -= 1

                m.register_forward_pre_hook(enter)
                m.register_forward_hook(leave)
                m._counted = True
            return m

    image = tmp_path / "a.png"
    image.write_bytes(encode_image(ImageData(np.random.default_rng(0).integers(0, 256, (20, 24, 3), np.uint8)), "PNG"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = launch(Settings(port=port, work_dir=tmp_path / "work"), block=False, quiet=True,
                  store=CountingStore(weights))
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, analytics_enabled=False,
                        download_files=str(tmp_path / "client"),
                        httpx_kwargs={"timeout": 120})  # httpx's 5 s default is short on a busy CI machine
        args = dict(files=[handle_file(str(image))], name="folder: tiny.safetensors", tile=0, ensemble=False,
                    device="cpu", dtype="float32", simulate=False, sigma=25, quality=10, api_name="/restore")
        jobs = [client.submit(**args) for _ in range(3)]
        statuses = [job.result(timeout=300)[0] for job in jobs]
    finally:
        demo.close()
    assert all("✓ **a.png**: 24×20 → 48×40" in s for s in statuses), statuses
    assert state["calls"] == 3 and state["most"] == 1, state
