"""The app's listening socket and the two servers that answer on it, one after the other.

``mambairv2 app`` binds its port at once and answers with a small "starting" page
(:class:`StartingPage`, standard library only) while Gradio and PyTorch load, which takes several
seconds; the finished page is then served on the same socket by uvicorn (:class:`PageServer`), so
no connection is refused in between and a browser that opened the URL early reloads into the app
by itself. Nothing here imports Gradio or PyTorch.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Optional

from .settings import Settings

if TYPE_CHECKING:
    from .models import ModelStore

#: Seconds the page server may take to start on the socket before it counts as failed.
START_TIMEOUT_S = 60.0
#: Seconds open connections (the page's event streams) get to finish when the app stops.
GRACEFUL_STOP_S = 2


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (``port`` 0: any free port).

    Raises:
        OSError: the address is in use, not this machine's, or not allowed.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url_for(host: str, sock: socket.socket) -> str:
    """The address to open in a browser for a socket bound to ``host``."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{sock.getsockname()[1]}/"


STARTING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MambaIRv2 — starting</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#333}</style>
</head><body><h1>MambaIRv2 is starting…</h1>
<p>Loading Gradio and PyTorch.</p><p>This page opens the app by itself as soon as it is ready.</p>
<script>
// Poll rather than meta-refresh: a failed request is retried instead of showing an error page.
async function poll() {
  try {
    const r = await fetch(location.href, {cache: "no-store"});
    if (r.status !== 503) { location.reload(); return; }
  } catch (e) {}
  setTimeout(poll, 500);
}
setTimeout(poll, 500);
</script></body></html>
"""


class _StartingHandler(BaseHTTPRequestHandler):
    """Every request: 503 with the starting page (no file, no path of this machine is served)."""

    def _answer(self, with_body: bool) -> None:
        body = STARTING_HTML.encode()
        self.send_response(503, "Starting")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Retry-After", "1")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the standard library's handler names
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def do_POST(self) -> None:  # noqa: N802
        self._answer(True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet, like the app
        pass


class StartingPage:
    """Answers on ``sock`` with the starting page until :meth:`stop` (the socket stays open)."""

    def __init__(self, sock: socket.socket) -> None:
        self._server = ThreadingHTTPServer(sock.getsockname()[:2], _StartingHandler, bind_and_activate=False)
        self._server.socket = sock
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="mambairv2-app-starting", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops answering; connections waiting on the socket are left for the next server."""
        self._server.shutdown()
        self._thread.join()


class PageServer:
    """Serves an ASGI ``app`` on ``sock`` with uvicorn in a background thread.

    ``on_stop`` runs first when the server stops (the page closes its queue and event streams
    there, so stopping does not wait on open browser tabs).
    """

    def __init__(self, app: Any, sock: socket.socket, on_stop: Optional[Callable[[], None]] = None) -> None:
        import uvicorn  # Gradio's own server, installed with it

        self.sock = sock
        self.server_port: int = sock.getsockname()[1]
        self._on_stop = on_stop
        config = uvicorn.Config(app, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=GRACEFUL_STOP_S)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="mambairv2-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise OSError("the page server did not start")
            time.sleep(0.01)

    def wait(self, stop: Optional[threading.Event] = None) -> None:
        """Blocks until the server stops or ``stop`` is set (Ctrl+C raises KeyboardInterrupt here)."""
        while self._thread.is_alive() and not (stop is not None and stop.is_set()):
            self._thread.join(0.5)

    def close(self) -> None:
        """Stops serving and frees the port."""
        if self._on_stop is not None:
            self._on_stop()
            self._on_stop = None
        self._server.should_exit = True
        self._thread.join(GRACEFUL_STOP_S + 10)
        self.sock.close()


def launch(settings: Settings, block: bool = True, quiet: bool = False,
           store: Optional["ModelStore"] = None) -> Optional[PageServer]:
    """Starts the app on ``settings.host:settings.port``.

    The port answers (the starting page) and the URL is printed before Gradio and PyTorch load;
    the page replaces it on the same socket when built. With ``block=False`` this returns the
    running :class:`PageServer` (call ``.close()``); otherwise it serves until Ctrl+C or SIGTERM,
    either of which stops it cleanly at any moment, start-up included, and returns the closed
    server (None when stopped before it was up).

    Raises:
        OSError: the address cannot be listened on.
        ImportError: Gradio is not installed.
    """
    if not block:
        return _start(settings, quiet, store)
    # before anything is made: a SIGTERM while Gradio and PyTorch load must stop the app as Ctrl+C
    # does (work folder removed at exit), not kill it where it stands
    previous = _stop_on_sigterm()
    server: Optional[PageServer] = None
    try:
        server = _start(settings, quiet, store)
        # the signal's KeyboardInterrupt may have been swallowed by library code during start-up
        server.wait(_STOPPING)
    except KeyboardInterrupt:
        pass
    except Exception:
        # the SIGTERM's KeyboardInterrupt can surface wrapped by the code it landed in (during an
        # import, a RuntimeError "Error calling __set_name__ ..."): a stop all the same
        if not _STOPPING.is_set():
            raise
    finally:
        if previous is not None:  # a second signal must not cut the clean-up short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            server.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return server


def _start(settings: Settings, quiet: bool, store: Optional["ModelStore"]) -> PageServer:
    """Binds the socket, answers with the starting page while the app loads, then serves it."""
    began = time.monotonic()
    sock = listen(settings.host, settings.port)
    url = url_for(settings.host, sock)
    starting = StartingPage(sock)
    try:
        if not quiet:
            print(f"MambaIRv2 app running on {url} (bound to {settings.host}; {_how_to_stop()}); loading "
                  "Gradio and PyTorch, the page opens by itself when ready", flush=True)
        from .page import mount

        app, on_stop = mount(replace(settings, port=sock.getsockname()[1]), store)  # port 0: the one chosen
    except BaseException:
        starting.stop()
        sock.close()
        raise
    starting.stop()
    server = PageServer(app, sock, on_stop=on_stop)
    if not quiet:
        print(f"ready after {time.monotonic() - began:.1f} s: {url}", flush=True)
    return server


def _how_to_stop() -> str:
    """How this process is stopped: Ctrl+C, unless it was started with SIGINT ignored (a shell's
    background job), which Python keeps."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        return f"Ctrl+C is ignored here (started in the background): stop it with kill {os.getpid()}"
    return "Ctrl+C stops it"


#: Set by SIGTERM: the app stops even where library code caught the KeyboardInterrupt raised then.
_STOPPING = threading.Event()


def _interrupt(signum: int, frame: Any) -> None:
    _STOPPING.set()
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """SIGTERM stops the app as Ctrl+C does (the server closes, temporary files are removed at
    exit); returns the previous handler, or None off the main thread (no handler can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)
