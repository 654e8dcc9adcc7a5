"""``mambairv2 app`` on the command line: Gradio stays unimported until the app starts, user
mistakes are one-line errors, and the command starts, prints its URL and serves the page."""
from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONUNBUFFERED": "1"}
START_TIMEOUT_S = 180  # a busy CI machine; the URL comes at once, the page in seconds


def mambairv2(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mambairv2", *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_app_without_importing_gradio():
    code = ("import argparse, sys; from mambairv2.cli import app; "
            "p = argparse.ArgumentParser(); app.add_parser(p.add_subparsers()); "
            "own = [m in sys.modules for m in ('gradio', 'torch')]; "
            "from mambairv2.cli.main import build_parser; h = build_parser().format_help(); "
            "print('app' in h, *own, 'gradio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    # the app's parser loads neither Gradio nor PyTorch; the whole --help does not load Gradio
    assert out.stdout.split() == ["True", "False", "False", "False"], out.stderr


def test_user_mistakes_are_one_line_errors(tmp_path):
    result = mambairv2("app", "--weights-dir", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --weights-dir {tmp_path / 'missing'}: no such folder"
    result = mambairv2("app", "--max-pixels", "0")
    assert result.returncode == 2 and "must be positive" in result.stderr
    for value in ("nan", "inf"):  # nan passed "<= 0" and ended in an internal error
        result = mambairv2("app", "--max-upload-mb", value)
        assert result.returncode == 2 and "must be a finite number" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "internal error" not in result.stderr


def read_until(proc, sel, text: str, seen: list, deadline: float) -> str:
    """The first line of ``proc``'s output containing ``text`` ('' at the deadline or exit)."""
    while time.monotonic() < deadline and proc.poll() is None:
        if sel.select(timeout=1):
            line = proc.stdout.readline()
            seen.append(line)
            if text in line:
                return line
    return ""


def start_app(argv: list, ctrl_c=signal.SIG_DFL, **popen) -> subprocess.Popen:
    """Starts ``argv`` (an app command) with SIGINT set to ``ctrl_c`` in the child (default
    handling unless told otherwise), its output on a text pipe. A shell starts background jobs
    with SIGINT ignored and children inherit that; Python then keeps it ignored, so the app would
    not see the test's Ctrl+C when the suite itself runs in the background (``pytest ... &``)."""
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, ctrl_c), **popen)


def interrupt_and_close(proc: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    """Ctrl+C (or ``signum``) to a running app started by :func:`start_app`: it must exit with 0
    within 60 s (checked only if it was still running, so a failure earlier in the test is not
    masked); killed otherwise, its output pipe closed."""
    try:
        if proc.poll() is None:
            proc.send_signal(signum)
            assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_app_starts_prints_its_url_and_serves_the_page(tmp_path):
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = start_app([sys.executable, "-m", "mambairv2", "app", "--port", str(port),
                      "--weights-dir", str(tmp_path)], env=ENV, cwd=tmp_path)
    seen: list = []
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = read_until(proc, sel, "running on http://", seen, start + START_TIMEOUT_S)
        url = line.split("running on ")[1].split()[0] if line else None
        assert url == f"http://127.0.0.1:{port}/", "".join(seen)
        print(f"mambairv2 app printed its URL after {time.monotonic() - start:.1f} s")
        # from then on the URL answers: the starting page (503, reload later) until the page is ready
        statuses = []
        while time.monotonic() - start < START_TIMEOUT_S:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    statuses.append(response.status)
                    body = response.read()
                    break
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
                assert exc.code == 503 and b"MambaIRv2 is starting" in exc.read()
            time.sleep(0.1)
        assert statuses[-1] == 200 and b"MambaIRv2" in body and b"is starting" not in body, statuses
        assert read_until(proc, sel, "ready after", seen, start + START_TIMEOUT_S), "".join(seen)
        print(f"the page was ready after {time.monotonic() - start:.1f} s")
    finally:
        interrupt_and_close(proc)


def test_started_with_ctrl_c_ignored_it_says_how_to_stop_and_sigterm_stops_it(tmp_path):
    """A background job of a shell gets SIGINT ignored, and Python keeps it so: the first line
    then names the process to kill instead of promising Ctrl+C, and SIGTERM stops the app."""
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    start = time.monotonic()
    proc = start_app([sys.executable, "-m", "mambairv2", "app", "--port", "0", "--weights-dir", str(tmp_path)],
                     ctrl_c=signal.SIG_IGN, env=ENV, cwd=tmp_path)
    seen: list = []
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = read_until(proc, sel, "running on http://", seen, start + START_TIMEOUT_S)
        assert f"Ctrl+C is ignored here (started in the background): stop it with kill {proc.pid})" in line, seen
        assert "Ctrl+C stops it" not in line
        assert read_until(proc, sel, "ready after", seen, start + START_TIMEOUT_S), "".join(seen)
    finally:
        interrupt_and_close(proc, signal.SIGTERM)


@pytest.mark.parametrize("after_s", [0.0, 0.3, 1.0, 2.5, "ready"])
def test_sigterm_at_any_moment_of_start_up_ends_it_cleanly(tmp_path, after_s):
    """SIGTERM while Gradio and PyTorch load (``after_s`` seconds after the first line: the port
    is bound, the work folder may be being made) or once it serves: exit status 0, and the work
    folder (under the child's temporary folder) is gone."""
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    temp = tmp_path / "tmp"
    temp.mkdir()
    start = time.monotonic()
    proc = start_app([sys.executable, "-m", "mambairv2", "app", "--port", "0", "--weights-dir", str(tmp_path)],
                     ctrl_c=signal.SIG_IGN, env={**ENV, "TMPDIR": str(temp)}, cwd=tmp_path)
    seen: list = []
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert read_until(proc, sel, "running on http://", seen, start + START_TIMEOUT_S), "".join(seen)
        if after_s == "ready":
            assert read_until(proc, sel, "ready after", seen, start + START_TIMEOUT_S), "".join(seen)
        else:
            time.sleep(after_s)
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=60)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert status == 0, "".join(seen) + rest
    assert "Traceback" not in rest, rest
    assert [p.name for p in temp.iterdir()] == [], "".join(seen) + rest


def test_a_port_in_use_is_a_one_line_error():
    pytest.importorskip("gradio", reason="the [app] extra (gradio) is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = mambairv2("app", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert result.stdout == ""
