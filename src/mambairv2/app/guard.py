"""What the app lets a request name: only files this server stored for the same client's
uploads, and only when the request comes to a host name the server answers to.

:class:`Guard` wraps the page's ASGI app. It gives every browser (or API client) a random
client id in an ``HttpOnly`` cookie, remembers which files Gradio's upload route stored for that
id and which results its responses handed to it, serves Gradio's file routes only those files,
and refuses requests whose ``Host`` header is not allowed (DNS rebinding: a page from another
site that resolves its own name to 127.0.0.1). :meth:`ClientFiles.open_upload` is the one check
every handler makes before reading a file a request names: the same answer for a file that is
not the client's and one that does not exist, and devices, FIFOs, links and oversized files
refused before any byte is read. Nothing here imports Gradio.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, Iterable, List, Mapping, Optional, Set

COOKIE = "mambairv2_client"
#: Host names (any port) a server bound to a loopback address answers to.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
LOOPBACK_BINDS = frozenset({"127.0.0.1", "localhost", "::1"})
UPLOAD_ROUTE = "/gradio_api/upload"
#: Routes that serve a file named in the URL: Gradio's ``file=``, its older ``file/`` form, and
#: the ``file=`` of Gradio versions before ``/gradio_api``. Only the asking client's files pass.
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/file=")
#: Gradio routes the page does not use that serve stored, streamed or fetched data: refused.
UNUSED_ROUTES = ("/gradio_api/proxy=", "/gradio_api/run-history/", "/gradio_api/stream/")
#: Longest response line scanned for the paths of files served to a client (Gradio's event
#: stream sends one JSON message per line); a longer one registers nothing.
MAX_SCANNED_LINE = 8 * 2**20

Scope = Dict[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]


class Refused(ValueError):
    """A file a request names that the app will not read; the message (one line) is shown."""


class NotYours(Refused):
    """A request named a file it may not read; the message is the same whatever the reason."""


def allowed_hosts(bound_to: str) -> Optional[frozenset]:
    """The ``Host`` names to accept for a server bound to ``bound_to``; None: any (a server bound
    to a public address is reached under names this process cannot know)."""
    return LOOPBACK_HOSTS if bound_to in LOOPBACK_BINDS else None


def host_name(header: str) -> str:
    """``header`` (a ``Host`` value) without its port."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.split("]")[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def client_of(headers: Mapping[str, str]) -> Optional[str]:
    """The client id in the ``cookie`` header of ``headers``, if any."""
    raw = headers.get("cookie") or headers.get("Cookie")
    if not raw:
        return None
    try:
        morsel = SimpleCookie(raw).get(COOKIE)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no client id
        return None
    return morsel.value if morsel is not None and morsel.value else None


class ClientFiles:
    """The uploaded files of each client id, and the check made before reading one."""

    def __init__(self) -> None:
        self._files: Dict[str, Set[str]] = {}
        self._guard = threading.Lock()

    def register(self, client: str, paths: Iterable[str]) -> None:
        with self._guard:
            self._files.setdefault(client, set()).update(os.path.realpath(p) for p in paths)

    def owns(self, client: Optional[str], path: str) -> bool:
        if not client:
            return False
        with self._guard:
            return os.path.realpath(path) in self._files.get(client, ())

    def check_upload(self, client: Optional[str], path: str, shown: str, max_bytes: int) -> None:
        """Refuses ``path`` unless it is one of ``client``'s uploads, a regular file (not a
        link, device or FIFO) of at most ``max_bytes``; reads nothing.

        Raises:
            NotYours: not this client's upload, or gone (one message for both).
            Refused: not a regular file, or too big.
        """
        self.open_upload(client, path, shown, max_bytes, read=False)

    def open_upload(self, client: Optional[str], path: str, shown: str, max_bytes: int,
                    read: bool = True) -> bytes:
        """The bytes of ``path`` after the checks of :meth:`check_upload` (made before reading).

        Raises:
            NotYours: not this client's upload, or gone (one message for both).
            Refused: not a regular file, or too big.
        """
        if not self.owns(client, path):
            raise NotYours(f"{shown}: no such upload in this session; upload the file again")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            raise NotYours(f"{shown}: no such upload in this session; upload the file again") from None
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise Refused(f"{shown}: not a regular file")
            if info.st_size > max_bytes:
                raise Refused(f"{shown}: the file is {info.st_size / 1e6:.1f} MB, over this page's upload "
                                 f"limit of {max_bytes / 1e6:.1f} MB (start the app with a larger --max-upload-mb)")
            if not read:
                return b""
            data = f.read(max_bytes + 1)
        if len(data) > max_bytes:  # grew while read
            raise Refused(f"{shown}: over this page's upload limit of {max_bytes / 1e6:.1f} MB")
        return data


def _header(scope: Scope, name: bytes) -> Optional[str]:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _file_paths(value: Any) -> List[str]:
    """The ``path`` of every file object (Gradio's FileData) in a decoded JSON message."""
    found: List[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("path"), str):
                found.append(item["path"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


class _ServedFiles:
    """Reads a response's body as it is sent, line by line, and registers for ``client`` the
    paths of the files it hands out (those inside ``root``, Gradio's cache folder)."""

    def __init__(self, files: ClientFiles, client: str, root: str) -> None:
        self.files, self.client, self.root = files, client, os.path.join(os.path.realpath(root), "")
        self.pending = b""

    def feed(self, chunk: bytes, last: bool) -> None:
        lines = (self.pending + chunk).split(b"\n")
        self.pending = b"" if last else lines.pop()
        if len(self.pending) > MAX_SCANNED_LINE:
            self.pending = b""
        for line in lines:
            if b'"path"' not in line:
                continue
            text = line.decode("utf-8", "replace").strip()
            if text.startswith("data:"):
                text = text[5:]
            try:
                message = json.loads(text)
            except ValueError:
                continue
            paths = [p for p in _file_paths(message) if os.path.realpath(p).startswith(self.root)]
            if paths:
                self.files.register(self.client, paths)


class Guard:
    """ASGI middleware: the ``Host`` allow-list, the client-id cookie, the record of which files
    the upload route stored for which client and which results were served to it, and the file
    routes, which serve only those (see :data:`FILE_ROUTES`)."""

    def __init__(self, app: Any, files: ClientFiles, hosts: Optional[frozenset],
                 served_root: Optional[str] = None) -> None:
        self.app, self.files, self.hosts = app, files, hosts
        #: the folder files served to clients lie in (Gradio's cache); None: no result is served
        self.served_root = served_root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if self.hosts is not None and host_name(_header(scope, b"host") or "") not in self.hosts:
            await self._refuse(scope, receive, send)
            return
        headers: List[tuple] = list(scope.get("headers", ()))
        cookie = _header(scope, b"cookie") or ""
        client = client_of({"cookie": cookie})
        new = client is None
        if new:
            client = secrets.token_urlsafe(24)
            cookie = f"{cookie}; {COOKIE}={client}" if cookie else f"{COOKIE}={client}"
            headers = [(k, v) for k, v in headers if k.lower() != b"cookie"] + [(b"cookie", cookie.encode())]
            scope = dict(scope, headers=headers)
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(UNUSED_ROUTES):
            await self._not_found(send)
            return
        named = next((path[len(r):] for r in FILE_ROUTES if path.startswith(r)), None)
        if named is not None and not self.files.owns(client, named):
            await self._not_found(send)  # the same answer for another client's file and none
            return
        is_upload = (scope["type"] == "http" and scope.get("method") == "POST"
                     and path.rstrip("/").endswith(UPLOAD_ROUTE))
        served = (_ServedFiles(self.files, client, self.served_root)
                  if self.served_root and scope["type"] == "http" and named is None and not is_upload
                  and path.startswith("/gradio_api/") else None)
        body: List[bytes] = []

        async def send_wrapper(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and new:
                extra = f"{COOKIE}={client}; Path=/; HttpOnly; SameSite=Strict".encode()
                message = dict(message, headers=list(message.get("headers", [])) + [(b"set-cookie", extra)])
            if is_upload and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._remember(client, b"".join(body))
            if served is not None and message["type"] == "http.response.body":
                served.feed(message.get("body", b""), not message.get("more_body", False))
            await send(message)

        await self.app(scope, receive, send_wrapper)

    def _remember(self, client: str, body: bytes) -> None:
        try:
            paths = json.loads(body)
        except ValueError:
            return
        if isinstance(paths, list):
            self.files.register(client, [p for p in paths if isinstance(p, str)])

    @staticmethod
    async def _not_found(send: Send) -> None:
        text = b"no such file in this session\n"
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        text = b"this server answers only to localhost (Host header refused)\n"
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})
