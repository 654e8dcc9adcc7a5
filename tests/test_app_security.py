"""The app serves only what it was given, tried through its real HTTP API as a hostile client
would: raw FileData payloads naming server files, devices and other sessions' uploads, a foreign
Host header, parallel identical uploads, and SIGTERM (see docs/security.md)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import mambairv2
from mambairv2.utils.imageio import ImageData, decode_image, encode_image

from conftest import REPO

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

MODEL = "folder: tiny.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(path: Path, seed: int = 0, size=(20, 24)) -> Path:
    px = np.random.default_rng(seed).integers(0, 256, (*size, 3), np.uint8)
    path.write_bytes(encode_image(ImageData(px), "PNG"))
    return path


def file_data(path: str) -> dict:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


class Client:
    """One HTTP client (one cookie jar: one session) of the app's API."""

    def __init__(self, url: str, **kw) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=120, **kw)
        self.http.get("/")  # the page: the server's client-id cookie

    def upload(self, path: Path) -> str:
        with open(path, "rb") as f:
            r = self.http.post("/gradio_api/upload", files={"files": (path.name, f)})
        r.raise_for_status()
        return r.json()[0]

    def call(self, api: str, data: list) -> tuple:
        """("complete", outputs) or ("error", message) of one API call."""
        r = self.http.post(f"/gradio_api/call/{api}", json={"data": data})
        r.raise_for_status()
        text = self.http.get(f"/gradio_api/call/{api}/{r.json()['event_id']}").text
        event = data_line = None
        for line in text.splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data_line = line.split(":", 1)[1].strip()
        if event == "complete":
            return "complete", json.loads(data_line)
        return "error", data_line

    def restore(self, *files: str) -> tuple:
        return self.call("restore", [[file_data(f) for f in files], MODEL, 0, False, "cpu", "float32", False,
                                     25, 10])


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from mambairv2.app.server import launch
    from mambairv2.app.settings import Settings

    root = tmp_path_factory.mktemp("app")
    weights = root / "weights"
    weights.mkdir()
    model = mambairv2.create_model("light", scale=2, embed_dim=12, depths=(1,), num_heads=(2,), d_state=4,
                                   inner_rank=4, num_tokens=6).eval()
    mambairv2.save_safetensors(model, weights / "tiny.safetensors")
    port = free_port()
    server = launch(Settings(port=port, weights_dir=weights), block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", root
    finally:
        server.close()


def status_of(result: tuple) -> str:
    kind, payload = result
    return payload[0] if kind == "complete" else f"error: {payload}"


def test_a_request_reads_only_files_its_own_session_uploaded(app):
    url, root = app
    secret = png(root / "secret.png", seed=1)
    alice, mallory = Client(url), Client(url)
    mine = alice.upload(png(root / "a.png"))
    assert "✓ **a.png**" in status_of(alice.restore(mine))

    # a server file named directly: refused, its pixels never come back, and the answer is the
    # one a path that does not exist gets
    kind, payload = mallory.restore(str(secret))
    assert kind == "error" or "✓" not in payload[0]
    assert str(secret) not in json.dumps(payload) or kind == "error"
    missing = mallory.restore(str(root / "missing.png"))
    assert status_of(missing).replace("missing.png", "X") == status_of((kind, payload)).replace("secret.png", "X")

    # another session's upload, and a name in the upload folder that does not exist: one answer
    theirs = status_of(mallory.restore(mine))
    nothing = status_of(mallory.restore(str(Path(mine).parent / "a2.png")))
    assert "no such upload in this session" in theirs
    assert theirs.replace("a.png", "X") == nothing.replace("a2.png", "X")


def test_devices_and_fifos_are_refused_without_reading(app):
    url, root = app
    fifo = root / "pipe.png"
    os.mkfifo(fifo)
    client = Client(url)
    for target in ("/dev/zero", str(fifo)):
        began = time.monotonic()
        assert "✓" not in status_of(client.restore(target))
        assert time.monotonic() - began < 30, target
    # the server still answers
    assert "✓" in status_of(client.restore(client.upload(png(root / "b.png"))))


def test_checkpoints_are_registered_only_from_the_sessions_uploads_and_stay_private(app):
    url, root = app
    ckpt = root / "weights" / "tiny.safetensors"
    alice, mallory = Client(url), Client(url)
    uploaded = alice.upload(ckpt)
    kind, out = alice.call("add_checkpoint", [file_data(uploaded), "cpu", "float32"])
    assert kind == "complete", out
    name = out[0]["value"]
    assert name.startswith("upload: tiny.safetensors") and name in [c[0] if isinstance(c, list) else c
                                                                   for c in out[0]["choices"]]
    # the other session neither lists it, loads it, nor registers the same file by its path
    kind, choices = mallory.call("choices", [])
    assert kind == "complete" and name not in json.dumps(choices)
    kind, out = mallory.call("add_checkpoint", [file_data(uploaded), "cpu", "float32"])
    assert kind == "error" or "refused" in json.dumps(out)
    kind, out = mallory.call("add_checkpoint", [file_data(str(ckpt)), "cpu", "float32"])
    assert kind == "error" or "refused" in json.dumps(out)
    r = mallory.call("restore", [[file_data(mallory.upload(png(root / "c.png")))], name, 0, False, "cpu",
                                 "float32", False, 25, 10])
    assert "✓" not in status_of(r)
    assert r[0] == "error" or "no model named" in status_of(r)


def test_a_foreign_host_header_is_refused_on_loopback(app):
    url, _ = app
    port = url.rsplit(":", 1)[1].strip("/")
    assert httpx.get(url, headers={"Host": "attacker.example"}).status_code == 403
    assert httpx.get(url, headers={"Host": f"attacker.example:{port}"}).status_code == 403
    assert httpx.get(url, headers={"Host": f"localhost:{port}"}).status_code == 200


def test_parallel_identical_uploads_are_all_served(app):
    url, root = app
    image = png(root / "same.png", seed=3)
    results, errors = [], []

    def one() -> None:
        try:
            client = Client(url)
            kind, out = client.restore(client.upload(image))
            assert kind == "complete" and "✓" in out[0], out
            for view in out[2:4]:  # before / after previews must be whole PNGs
                body = client.http.get(view["url"]).content
                decode_image(body)
            results.append(out)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors and len(results) == 8, errors


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # a hostile upload cannot take the machine


def test_sigterm_removes_the_temporary_files_as_ctrl_c_does(tmp_path):
    """Also after a hostile checkpoint upload: refused at once, the next restore served."""
    weights = tmp_path / "weights"
    weights.mkdir()
    model = mambairv2.create_model("light", scale=2, embed_dim=12, depths=(1,), num_heads=(2,), d_state=4,
                                   inner_rank=4, num_tokens=6).eval()
    mambairv2.save_safetensors(model, weights / "tiny.safetensors")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TMPDIR": str(tmp)}
    hostile = tmp_path / "deep.safetensors"  # a configuration of 100,000 layers on a tiny file
    from safetensors.torch import save_file

    stored = {**model.config.to_dict(), "depths": [100000]}
    save_file(model.state_dict(), str(hostile), metadata={"mambairv2_config": json.dumps(stored), "format": "pt"})
    proc = subprocess.Popen([sys.executable, "-m", "mambairv2", "app", "--port", str(port), "--weights-dir",
                             str(weights)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_limit_memory)
    try:
        for line in proc.stdout:
            if "ready after" in line:
                break
        client = Client(f"http://127.0.0.1:{port}/")
        began = time.monotonic()
        kind, out = client.call("add_checkpoint", [file_data(client.upload(hostile)), "cpu", "float32"])
        assert "not this file's network" in json.dumps(out), (kind, out)
        assert "✓" in status_of(client.restore(client.upload(png(tmp_path / "x.png"))))
        assert time.monotonic() - began < 10  # the upload refused at once: the next restore served
        assert any(tmp.glob("mambairv2-app-*/job-*/*.png"))  # a restored image is there
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not list(tmp.glob("mambairv2-app-*")), list(tmp.rglob("*"))


def mounted_routes(asgi) -> list:
    """(path, methods) of every route the app mounts: the outer app, Gradio's app mounted in it
    and the routers Gradio includes."""
    found, stack = [], [("", asgi)]
    while stack:
        prefix, node = stack.pop()
        for route in getattr(node, "routes", ()):
            path = getattr(route, "path", None)
            if getattr(route, "original_router", None) is not None:  # an included router: full paths
                stack.append(("", route.original_router))
            elif hasattr(getattr(route, "app", None), "routes"):  # a mounted app
                stack.append((prefix + (path or "").rstrip("/"), route.app))
            elif path is not None:
                found.append((prefix + path, sorted(getattr(route, "methods", None) or ["GET"])))
    return found


def _filled(path: str, value: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", lambda m: value.lstrip("/") if m.start() > 0 and path[m.start() - 1] == "/"
                  else value, path)


def test_no_route_serves_another_clients_uploads_or_results(app):
    """Every route Gradio mounts, asked by a second client (its own cookie) with the first
    client's upload and result paths (whole, and by file name) in the URL and in a body."""
    url, root = app
    alice, mallory = Client(url), Client(url)
    upload = alice.upload(png(root / "alice.png", seed=7))
    kind, out = alice.restore(upload)
    assert kind == "complete" and "✓" in out[0], out
    files = [upload] + [view["path"] for view in out[2:4]] + [d["path"] for d in out[4]]
    secrets_ = {p: Path(p).read_bytes() for p in files}
    for p in files:  # the owner reads them
        assert alice.http.get(f"/gradio_api/file={p}").content == secrets_[p]

    from mambairv2.app.page import mount
    from mambairv2.app.settings import Settings

    # the routes of a page built as the served one is
    asgi, stop = mount(Settings(port=free_port(), weights_dir=root / "weights"))
    try:
        routes = mounted_routes(asgi.app)
    finally:
        stop()
    assert any("file=" in r for r, _ in routes) and len(routes) > 40, routes
    leaked = []
    for route, methods in routes:
        for p in files:
            for value in (p, Path(p).name):
                target = _filled(route, value)
                for method in methods:
                    body = {"data": [file_data(p)], "path": p, "fn_index": 0, "session_hash": "s", "files": [p]}
                    try:
                        r = mallory.http.request(method, target, json=body if method == "POST" else None,
                                                 timeout=1)
                        content = r.content
                        if method == "POST" and r.headers.get("content-type", "").startswith("application/json"):
                            event = r.json().get("event_id") if isinstance(r.json(), dict) else None
                            if event:  # a queued call: its result stream
                                content += mallory.http.get(f"{target}/{event}", timeout=30).content
                    except httpx.TransportError:  # a stream that stays open (heartbeat), a reset
                        continue
                    if any(s in content for s in secrets_.values()) or (p in content.decode("latin-1")
                                                                        and "file=" in route):
                        leaked.append((method, target, r.status_code))
    assert not leaked, leaked
    # and the owner still reads its files after all that
    assert alice.http.get(f"/gradio_api/file={upload}").content == secrets_[upload]


def test_the_result_picker_shows_a_client_only_its_own_last_results(tmp_path, monkeypatch):
    """The results a client can switch between are its own last run's, never another client's,
    and the page forgets the oldest clients' beyond a bound (paths only are kept)."""
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    from types import SimpleNamespace

    from mambairv2.app import page

    unchanged = {"unchanged": True}
    on = page.Handlers(SimpleNamespace(update=lambda **kw: unchanged), store=None, limits=None, work=tmp_path)
    on._remember("alice", {"a.png": ("alice-before.png", "alice-after.png")})
    on._remember("bob", {"b.png": ("bob-before.png", "bob-after.png")})
    assert on.show("a.png", "alice") == (("alice-before.png", "alice-after.png"), "alice-before.png",
                                         "alice-after.png")
    assert on.show("a.png", "bob") == (unchanged,) * 3
    assert on.show("b.png", None) == (unchanged,) * 3
    on._remember("alice", {"c.png": ("c0.png", "c1.png")})  # a new run replaces the last one
    assert on.show("a.png", "alice") == (unchanged,) * 3
    monkeypatch.setattr(page, "KEPT_CLIENTS", 3)
    for i in range(5):
        on._remember(f"client-{i}", {"x.png": ("b.png", "a.png")})
    assert on.show("x.png", "client-0") == (unchanged,) * 3 and on.show("x.png", "client-4")[1] == "b.png"
    assert len(on._shown) == 3
