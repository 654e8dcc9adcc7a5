"""``mambairv2 download`` and ``--weights NAME`` against a hub stand-in on 127.0.0.1: listing
read from the repository, download + verification + record, offline mode, damaged downloads."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, shared_path
from hub_standin import COMMIT, HubStandIn

pytest.importorskip("huggingface_hub", reason="huggingface_hub is needed (pip install 'mambairv2[hub]')")

REPO_ID = "cguoh/MambaIR"


@pytest.fixture()
def files():
    golden = shared_path("golden", "light_x2.pth").read_bytes()
    return {
        "README.md": b"# MambaIR\n",
        "MambaIR_ckpt/MambaIR_SR2.pth": b"v1 weights are not listed",
        "MambaIRv2_ckpt/mambairv2_lightSR_x2.pth": golden,
        "MambaIRv2_ckpt/damaged_x2.pth": shared_path("golden", "full_x2.pth").read_bytes(),  # served corrupted
        "MambaIRv2_ckpt/notes_x4.pth": b"PK\x03\x04 not a checkpoint at all",
    }


def cli(env_extra, *args, tmp):
    env = {k: v for k, v in os.environ.items()  # the stand-in is local: no hub settings, no proxy
           if not k.startswith(("HF_", "HUGGINGFACE")) and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(REPO / "src"), HF_HOME=str(tmp / "hf"), MAMBAIRV2_CACHE_DIR=str(tmp / "mc"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1", **env_extra)
    return subprocess.run([sys.executable, "-m", "mambairv2", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_list_download_offline_and_weights_by_name(files, tmp_path):
    with HubStandIn(REPO_ID, files, corrupt={"MambaIRv2_ckpt/damaged_x2.pth"}) as hub:
        online = {"HF_ENDPOINT": hub.endpoint}
        r = cli(online, "download", "--list", tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        names = [line.split("\t")[0] for line in r.stdout.splitlines()]
        assert names == ["damaged_x2", "mambairv2_lightSR_x2", "notes_x4"]  # v1 and README not listed

        r = cli(online, "download", "mambairv2_lightSR_x2", tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        sha = hashlib.sha256(files["MambaIRv2_ckpt/mambairv2_lightSR_x2.pth"]).hexdigest()
        assert "MambaIRv2Light (light), task sr, x2" in r.stdout and sha in r.stdout
        record = json.loads((tmp_path / "mc" / "downloads.json").read_text())["mambairv2_lightSR_x2"]
        assert record["sha256"] == sha and record["revision"] == COMMIT and record["scale"] == 2
        assert Path(record["path"]).read_bytes() == files["MambaIRv2_ckpt/mambairv2_lightSR_x2.pth"]

        r = cli(online, "download", "mambairv2_base_x9", tmp=tmp_path)
        assert r.returncode == 1 and "has no checkpoint 'mambairv2_base_x9'" in r.stderr

        # a transfer that delivers other bytes under the file's ETag, and a file that is no checkpoint
        r = cli(online, "download", "damaged_x2", tmp=tmp_path)
        assert r.returncode == 1 and "rejected" in r.stderr and "SHA-256" in r.stderr, r.stderr
        r = cli(online, "download", "notes_x4", tmp=tmp_path)
        assert r.returncode == 1 and "not a loadable MambaIR/MambaIRv2 checkpoint" in r.stderr, r.stderr
        blobs = list((tmp_path / "hf").rglob("blobs/*"))
        assert len(blobs) == 1  # only the verified file stays in the cache
        served = len(hub.requests)

        # offline: nothing is requested; the cached name works, the list falls back to the record
        offline = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1"}
        r = cli(offline, "download", "mambairv2_lightSR_x2", tmp=tmp_path)
        assert r.returncode == 0 and sha in r.stdout, r.stderr
        r = cli(offline, "download", "--list", tmp=tmp_path)
        assert r.returncode == 0 and r.stdout.startswith("mambairv2_lightSR_x2\tlight x2 sr"), r.stdout
        r = cli(offline, "download", "notes_x4", tmp=tmp_path)
        assert r.returncode == 1 and "offline" in r.stderr
        r = cli(offline, "info", "mambairv2_lightSR_x2", tmp=tmp_path)  # load_model on a name
        assert r.returncode == 0 and "MambaIRv2Light" in r.stdout + r.stderr, r.stderr
        assert len(hub.requests) == served


def test_names_resolve_in_process(files, tmp_path, monkeypatch):
    from mambairv2.models import CheckpointError, resolve

    existing = shared_path("golden", "light_x2.pth")
    assert resolve(existing).path == existing  # a path is returned as is
    monkeypatch.setenv("MAMBAIRV2_CACHE_DIR", str(tmp_path / "mc"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(CheckpointError, match="unknown model 'mambairv2_lightSR_x2'.*mambairv2 download"):
        resolve("mambairv2_lightSR_x2")
    with pytest.raises(CheckpointError, match="no such file$"):
        resolve("some/dir/missing.pth")


def test_an_unreachable_hub_is_one_line_without_retries(tmp_path):
    """Nothing listens at the endpoint: the command says so at once (huggingface_hub alone would
    retry for about 25 seconds, logging each retry)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    endpoint = {"HF_ENDPOINT": f"http://127.0.0.1:{port}"}
    for args in (("download", "--list"), ("download", "mambairv2_lightSR_x2")):
        r = cli(endpoint, *args, tmp=tmp_path)
        assert r.returncode == 1, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot reach http://127.0.0.1" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0], r.stderr
        if args[1] != "--list":  # the command's own words first: a download, not a listing
            assert lines[0].startswith("error: cannot download mambairv2_lightSR_x2: "), lines[0]


#: runs the command line with an audit hook that logs every connection and name look-up the
#: process attempts (any address: the hub stand-in, a proxy, a DNS server) to the file in argv[1]
_COUNTING = """
import sys, time
log = open(sys.argv[1], "a")
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
        log.write(f"{event} {args[1:] if event == 'socket.connect' else args}\\n"); log.flush()
sys.addaudithook(hook)
from mambairv2.cli.main import main
start = time.perf_counter()
code = main(sys.argv[2:])
print(f"elapsed {time.perf_counter() - start:.3f}", file=sys.stderr)
sys.exit(code)
"""


def counted(env_extra, *args, tmp, log):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE")) and not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(REPO / "src"), HF_HOME=str(tmp / "hf"), MAMBAIRV2_CACHE_DIR=str(tmp / "mc"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", OMP_NUM_THREADS="1", **env_extra)
    started = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", _COUNTING, str(log), *args], env=env,
                       capture_output=True, text=True, timeout=300)
    r.wall = time.perf_counter() - started
    r.elapsed = float(r.stderr.strip().splitlines()[-1].split()[1])  # main() alone, no start-up
    r.stderr = "\n".join(r.stderr.strip().splitlines()[:-1])
    return r


def test_offline_is_offline(files, tmp_path):
    """HF_HUB_OFFLINE=1: no command opens a connection or looks a name up; each answers at once
    with what the local cache holds (listing and misses within a second, without PyTorch)."""
    log = tmp_path / "connections.log"
    with HubStandIn(REPO_ID, files) as hub:
        r = cli({"HF_ENDPOINT": hub.endpoint}, "download", "mambairv2_lightSR_x2", tmp=tmp_path)
        assert r.returncode == 0, r.stderr
        served = len(hub.requests)
        offline = {"HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1"}
        runs = {
            "list": counted(offline, "download", "--list", tmp=tmp_path, log=log),
            "miss": counted(offline, "download", "notes_x4", tmp=tmp_path, log=log),
            "cached": counted(offline, "download", "mambairv2_lightSR_x2", tmp=tmp_path, log=log),
            "info": counted(offline, "info", "mambairv2_lightSR_x2", tmp=tmp_path, log=log),
        }
        assert len(hub.requests) == served
    assert not log.exists() or log.read_text() == "", log.read_text()
    assert runs["list"].returncode == 0 and runs["list"].stdout.startswith("mambairv2_lightSR_x2\t"), runs["list"]
    assert "offline" in runs["list"].stderr
    assert runs["miss"].returncode == 1 and "offline" in runs["miss"].stderr
    assert runs["cached"].returncode == 0 and runs["info"].returncode == 0, (runs["cached"].stderr, runs["info"].stderr)
    for name in ("list", "miss"):
        assert runs[name].elapsed < 1.0, (name, runs[name].elapsed)


def test_the_counting_stand_in_sees_connections(files, tmp_path):
    """The same counter online: the listing is seen (so zero above means zero)."""
    log = tmp_path / "connections.log"
    with HubStandIn(REPO_ID, files) as hub:
        r = counted({"HF_ENDPOINT": hub.endpoint}, "download", "--list", tmp=tmp_path, log=log)
    assert r.returncode == 0, r.stderr
    assert "socket.connect" in log.read_text()
