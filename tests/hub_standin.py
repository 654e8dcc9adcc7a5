"""A stand-in for the Hugging Face hub on 127.0.0.1, enough for huggingface_hub's file listing
(``GET /api/models/{repo}/tree/{rev}``) and downloads (``HEAD``/``GET
/{repo}/resolve/{rev}/{file}`` with ``X-Repo-Commit``, ``ETag`` = the LFS SHA-256 and
``Content-Length``). It serves a fixed set of files, optionally sending a corrupted body under a
file's true ETag, logs every request and stops after ``max_requests`` or when closed."""
from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Set
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubStandIn:
    def __init__(self, repo_id: str, files: Dict[str, bytes], corrupt: Optional[Set[str]] = None,
                 max_requests: int = 200) -> None:
        self.repo_id, self.files = repo_id, dict(files)
        self.corrupt = set(corrupt or ())
        self.requests: List[str] = []
        self.max_requests = max_requests
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.timeout = 0.2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HubStandIn":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.server_close()

    def _loop(self) -> None:
        while not self._stop.is_set() and len(self.requests) < self.max_requests:
            self._server.handle_request()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _route(self, head: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                tree = f"/api/models/{hub.repo_id}/tree/main"
                resolve = f"/{hub.repo_id}/resolve/main/"
                if path == tree:
                    body = json.dumps([{"type": "file", "path": name, "size": len(data),
                                        "oid": hashlib.sha1(data).hexdigest(),
                                        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                                "pointerSize": 134}}
                                       for name, data in sorted(hub.files.items())]).encode()
                    return self._send(200, body, {"Content-Type": "application/json"}, head)
                if path.startswith(resolve) and path[len(resolve):] in hub.files:
                    name = path[len(resolve):]
                    data = hub.files[name]
                    etag = hashlib.sha256(data).hexdigest()
                    if name in hub.corrupt:  # same length, other bytes: a damaged transfer
                        data = bytes(b ^ 0x5A for b in data)
                    return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"',
                                                  "Content-Type": "application/octet-stream"}, head)
                return self._send(404, b'{"error": "Entry not found"}',
                                  {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, head)

            def _send(self, status: int, body: bytes, headers: Dict[str, str], head: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._route(head=False)

            def do_HEAD(self) -> None:
                self._route(head=True)

        return Handler
