"""The app's socket: it answers with the starting page from the moment the URL is printed, the page
takes over on the same socket without refusing a connection, and every way out frees the port.
A tiny ASGI app stands in for the Gradio page, so this needs uvicorn (Gradio's server) only."""
from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from mambairv2.app import page
from mambairv2.app.server import launch, listen
from mambairv2.app.settings import Settings

pytest.importorskip("uvicorn", reason="the [app] extra (gradio, which brings uvicorn) is not installed")

REAL_PAGE = b"<html>the real page</html>"


async def stand_in_page(scope, receive, send):
    """A minimal ASGI app: lifespan events, and 200 with REAL_PAGE for every request."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(REAL_PAGE)).encode())]})
    await send({"type": "http.response.body", "body": REAL_PAGE})


def fetch(url: str):
    """(status, body, Retry-After) of a GET, or (error class name, b"", None)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), r.headers.get("Retry-After")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Retry-After")
    except OSError as e:
        return type(e).__name__, b"", None


def port_is_free(port: int) -> bool:
    try:
        listen("127.0.0.1", port).close()
        return True
    except OSError:
        return False


def test_starting_page_answers_until_the_page_takes_over_on_the_same_socket(monkeypatch, capsys):
    release, stopped = threading.Event(), []

    def slow_mount(settings, store=None):
        assert release.wait(60), "the test never released the page"
        return stand_in_page, lambda: stopped.append(True)

    monkeypatch.setattr(page, "mount", slow_mount)
    result = {}
    starter = threading.Thread(target=lambda: result.setdefault("server", launch(Settings(port=0), block=False)))
    starter.start()
    out, deadline = "", time.monotonic() + 60
    while "running on http://" not in out and time.monotonic() < deadline:
        time.sleep(0.01)
        out += capsys.readouterr().out
    url = out.split("running on ")[1].split()[0]

    # the page is not built yet: every request gets the starting page
    status, body, retry = fetch(url)
    assert status == 503 and b"MambaIRv2 is starting" in body and retry == "1"
    assert fetch(url + "gradio_api/info")[0] == 503  # any path: no file is served meanwhile

    # requests keep coming while the page takes over: none is refused
    seen, polling = [], threading.Event()

    def poll():
        polling.set()
        while not seen or seen[-1][0] != 200:
            seen.append(fetch(url))

    poller = threading.Thread(target=poll)
    poller.start()
    polling.wait(10)
    time.sleep(0.2)
    release.set()
    starter.join(60)
    poller.join(60)
    server = result["server"]
    try:
        assert {s for s, _, _ in seen} <= {503, 200}, [s for s, _, _ in seen]
        assert seen[-1][1] == REAL_PAGE and fetch(url)[1] == REAL_PAGE
        assert "ready after" in capsys.readouterr().out
    finally:
        server.close()
    assert stopped == [True]  # the page's stop hook ran
    assert port_is_free(server.server_port)


def test_a_page_that_fails_to_build_frees_the_port(monkeypatch):
    def broken_mount(settings, store=None):
        raise ImportError("cannot import name 'Blocks' from 'gradio'")

    monkeypatch.setattr(page, "mount", broken_mount)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ImportError):
        launch(Settings(port=port), block=False, quiet=True)
    assert port_is_free(port)


def test_a_port_in_use_is_an_oserror_before_anything_loads(monkeypatch):
    monkeypatch.setattr(page, "mount", lambda *a, **k: pytest.fail("the page was built"))
    with listen("127.0.0.1", 0) as taken:
        with pytest.raises(OSError):
            launch(Settings(port=taken.getsockname()[1]), block=False, quiet=True)


@pytest.mark.parametrize("stopping", [True, False])
def test_a_sigterm_that_surfaces_wrapped_during_start_up_is_a_clean_stop(monkeypatch, stopping):
    """A SIGTERM's interrupt that library code re-raises as another error while the app starts
    (Python wraps it in RuntimeError when it lands in a class's ``__set_name__`` during an import)
    stops the app cleanly; the same error without a SIGTERM still propagates."""
    from mambairv2.app import server

    def start(*args):
        if stopping:
            server._STOPPING.set()
        raise RuntimeError("Error calling __set_name__ on 'Field' instance 'artifacts' in 'CacheInfo'")

    monkeypatch.setattr(server, "_start", start)
    monkeypatch.setattr(server, "_STOPPING", threading.Event())
    if stopping:
        assert launch(Settings(port=0), block=True) is None
    else:
        with pytest.raises(RuntimeError, match="__set_name__"):
            launch(Settings(port=0), block=True)
