"""The authors' released MambaIRv2 checkpoints by name, from their Hugging Face model repository.

The repository ``cguoh/MambaIR`` holds MambaIR (v1) and MambaIRv2 weights; the MambaIRv2 files
live under ``MambaIRv2_ckpt/``. A checkpoint's *name* is its file name there without the
extension (``mambairv2_lightSR_x4`` for ``MambaIRv2_ckpt/mambairv2_lightSR_x4.pth``). The list
is read from the repository when asked for (:func:`list_remote`), never hard-coded.

Downloads go through ``huggingface_hub`` (extra ``[hub]``, imported lazily): its cache, resumable
downloads, progress bars, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_HOME``. Every downloaded file
is checked before it is used: its SHA-256 must equal the hub's ETag where that is an LFS
SHA-256, and :func:`mambairv2.load_model` must load it (configuration detected). What passed is
recorded, with the SHA-256, in ``downloads.json`` in the mambairv2 cache folder
(:func:`mambairv2.utils.cache_dir.cache_dir`).

Only :func:`download` downloads. :func:`resolve_weights` (what ``--weights NAME`` uses) returns an
existing path unchanged and otherwise looks a name up in the local hub cache only.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from ..utils.atomic import atomic_path
from ..errors import CheckpointError, MambaIRv2Error
from ..utils.cache_dir import cache_dir

REPO_ID = "cguoh/MambaIR"
FOLDER = "MambaIRv2_ckpt"
EXTENSIONS = (".pth", ".safetensors")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: Seconds to wait for the hub's host to accept a connection before giving up.
CONNECT_TIMEOUT_S = 10.0


class HubError(MambaIRv2Error):
    """A name that cannot be listed, found, downloaded or verified (message: one line)."""

    code = 1


@dataclass(frozen=True)
class Downloaded:
    """A verified checkpoint in the local hub cache."""

    name: str
    path: Path
    repo_file: str
    revision: Optional[str]
    sha256: str
    size: int
    arch: str
    variant: str
    scale: int
    task: str

    def summary(self) -> str:
        return (f"{self.name}: {self.arch} ({self.variant}), task {self.task}, x{self.scale}, "
                f"sha256 {self.sha256}, {self.size:,} bytes")


def _hf():
    try:
        import huggingface_hub
    except ImportError:
        raise HubError("huggingface_hub is not installed: pip install 'mambairv2[hub]'") from None
    return huggingface_hub


def record_path() -> Path:
    return cache_dir() / "downloads.json"


def name_of(repo_file: str) -> str:
    """``MambaIRv2_ckpt/x.pth`` → ``x``."""
    return Path(repo_file).stem


def list_remote(repo_id: str = REPO_ID, revision: Optional[str] = None) -> Dict[str, str]:
    """Name → file in the repository, for every checkpoint under ``MambaIRv2_ckpt/`` (read from
    the hub now). Raises HubError offline (``HF_HUB_OFFLINE``, without opening a connection) or
    when the hub cannot be reached."""
    hf = _hf()
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise HubError(f"cannot list {repo_id}: offline (HF_HUB_OFFLINE is set)")
    unreachable = _unreachable(constants.ENDPOINT)
    if unreachable:
        raise HubError(f"cannot list {repo_id}: {unreachable}")
    try:
        files = hf.HfApi().list_repo_files(repo_id, revision=revision)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise HubError(f"cannot list {repo_id}: {_reason(exc)}") from None
    return {name_of(f): f for f in sorted(files)
            if f.startswith(FOLDER + "/") and f.endswith(EXTENSIONS) and f.count("/") == 1}


def _unreachable(endpoint: str, timeout: float = CONNECT_TIMEOUT_S) -> Optional[str]:
    """Why the hub's host does not accept a connection (no network, unknown host, nothing
    listening), or None. Checked first because huggingface_hub retries a failed connection for
    about 25 seconds; skipped behind a proxy, where the host itself need not be reachable."""
    import socket
    import urllib.request
    from urllib.parse import urlsplit

    if urllib.request.getproxies():
        return None
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return (f"cannot reach {endpoint} ({exc.strerror or exc}); check the network, or set "
                "HF_HUB_OFFLINE=1 to use the checkpoints already downloaded")
    return None


def _candidates(name: str) -> List[str]:
    if not _NAME.match(name):
        raise HubError(f"{name!r} is not a checkpoint name (see 'mambairv2 download --list')")
    if name.endswith(EXTENSIONS):
        return [f"{FOLDER}/{name}"]
    return [f"{FOLDER}/{name}{ext}" for ext in EXTENSIONS]


def download(name: str, repo_id: str = REPO_ID, revision: Optional[str] = None,
             force: bool = False) -> Downloaded:
    """Downloads checkpoint ``name`` (or takes it from the hub cache), verifies it and records it.

    A file that fails verification is removed from the cache and HubError is raised."""
    hf = _hf()
    from huggingface_hub import constants

    check_destinations(constants.HF_HUB_CACHE)
    try:  # the name is looked up in the repository's listing first
        remote = None if constants.is_offline_mode() else list_remote(repo_id, revision)
    except HubError as exc:
        raise HubError(f"cannot download {name}: {exc}") from None
    if remote is not None:
        stem = name_of(name) if name.endswith(EXTENSIONS) else name
        if stem not in remote:
            known = ", ".join(remote) or "none"
            raise HubError(f"{repo_id} has no checkpoint {name!r} under {FOLDER}/; available: {known}")
        files = [remote[stem]]
    else:
        # offline, a miss is told from the cache folder alone: huggingface_hub's download module
        # takes a second or more just to import
        files = [f for f in _candidates(name) if _maybe_cached(constants.HF_HUB_CACHE, repo_id, f)]
    last: Optional[BaseException] = None
    for repo_file in files:
        cached = _maybe_cached(constants.HF_HUB_CACHE, repo_id, repo_file)
        _clear_non_file(constants.HF_HUB_CACHE, repo_id, repo_file)
        try:
            local = hf.hf_hub_download(repo_id, repo_file, revision=revision, force_download=force)
        except Exception as exc:  # noqa: BLE001
            last = exc
            continue
        try:
            return _verify_and_record(hf, Path(local), repo_id, repo_file, revision)
        except HubError:
            if not cached or force or remote is None:
                raise
        # the copy in the cache was damaged after it was verified (truncated, altered): it is
        # gone now, so one more download (once) replaces it in this same run
        try:
            local = hf.hf_hub_download(repo_id, repo_file, revision=revision, force_download=True)
        except Exception as exc:  # noqa: BLE001
            raise HubError(f"{repo_file}: the cached copy was damaged and removed; downloading it again "
                           f"failed: {_reason(exc)}") from None
        return _verify_and_record(hf, Path(local), repo_id, repo_file, revision)
    if remote is None and last is None:
        raise HubError(f"cannot download {name!r}: offline (HF_HUB_OFFLINE is set), and not in the cache")
    offline = " (offline, and not in the cache)" if remote is None else ""
    raise HubError(f"cannot download {name!r}{offline}: {_reason(last)}")


def check_destinations(hub_cache: Union[str, Path]) -> None:
    """The folders and file a download writes (huggingface_hub's cache folder, the mambairv2
    cache folder and its record of verified downloads), checked before anything is fetched.

    Raises:
        OutputError: one of them is a file where a folder belongs, or a folder where the
            record belongs (one line naming it and what to do).
    """
    from ..utils.outputs import check_output, check_output_dir

    check_output_dir(hub_cache, "the huggingface_hub cache folder (HF_HUB_CACHE or HF_HOME)")
    check_output_dir(cache_dir(), "the mambairv2 cache folder (MAMBAIRV2_CACHE_DIR)")
    check_output(record_path(), "the record of verified downloads", overwrite=True, suffixes=(".json",))


def _snapshot_files(hub_cache: Union[str, Path], repo_id: str, repo_file: str) -> List[Path]:
    """``repo_file`` in every snapshot of ``repo_id`` in huggingface_hub's cache folder
    (huggingface_hub's layout: ``models--{owner}--{name}/snapshots/{commit}/{file}``)."""
    snapshots = Path(hub_cache) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return [s / repo_file for s in snapshots.glob("*")]


def _clear_non_file(hub_cache: Union[str, Path], repo_id: str, repo_file: str) -> None:
    """Removes an empty folder standing where a cached checkpoint belongs (huggingface_hub would
    take it for the file); a folder with contents is the user's: one line says to remove it."""
    for path in _snapshot_files(hub_cache, repo_id, repo_file):
        if path.is_dir() and not path.is_symlink():
            try:
                path.rmdir()
            except OSError:
                raise HubError(f"{path}: a folder stands where the cached {repo_file} belongs; "
                               "remove it and download again") from None


def _maybe_cached(hub_cache: str, repo_id: str, repo_file: str) -> bool:
    """Whether some snapshot of ``repo_id`` in huggingface_hub's cache folder holds ``repo_file``."""
    return any(p.exists() for p in _snapshot_files(hub_cache, repo_id, repo_file))


def _verify_and_record(hf, local: Path, repo_id: str, repo_file: str, revision: Optional[str]) -> Downloaded:
    sha = sha256_of(local)
    etag = _cached_etag(local)
    problem = None
    if etag and _SHA256.match(etag) and etag != sha:
        problem = f"SHA-256 {sha} differs from the hub's {etag}"
    else:
        # imported here: listing and offline look-ups answer without loading PyTorch
        from .checkpoint import load_file
        from .registry import describe

        try:
            info = describe(load_file(local))
        except CheckpointError as exc:
            problem = f"not a loadable MambaIR/MambaIRv2 checkpoint ({exc})"
    if problem:
        _evict(local)
        raise HubError(f"{repo_file}: downloaded file rejected and removed from the cache: {problem}")
    # huggingface_hub's layout: …/snapshots/<commit>/<path in the repository>
    commit = next((p.name for p in local.parents if p.parent.name == "snapshots"), revision)
    item = Downloaded(name=name_of(repo_file), path=local, repo_file=f"{repo_id}/{repo_file}",
                      revision=commit, sha256=sha, size=local.stat().st_size, arch=info.arch,
                      variant=info.variant, scale=info.scale, task=info.task)
    _record(item)
    return item


def _cached_etag(local: Path) -> Optional[str]:
    """The ETag huggingface_hub stored the file under (``blobs/<etag>``), if it is a blob link."""
    try:
        target = local.resolve()
    except OSError:
        return None
    return target.name if target.parent.name == "blobs" else None


def _evict(local: Path) -> None:
    """Removes a rejected file: the snapshot link and the blob it points to."""
    target = local.resolve()
    for p in {local, target}:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise HubError(f"{p}: a folder stands where a cached checkpoint belongs; remove it") from None


def sha256_of(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_records() -> Dict[str, dict]:
    """Name → record of every verified download (empty when none). A record file that is not
    a JSON object of records (binary garbage, another JSON type) counts as empty and is
    rewritten at the next download; entries that are not records are left out.

    Raises:
        HubError: the record's path is a folder, or the file cannot be read (one line).
    """
    path = record_path()
    try:
        data = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except IsADirectoryError:
        raise HubError(f"{path}: is a folder, not the record of verified downloads; remove it "
                       "(the next 'mambairv2 download' writes the record anew)") from None
    except OSError as exc:
        raise HubError(f"{path}: cannot read the record of verified downloads ({exc.strerror or exc})") from None
    except ValueError:  # not JSON, not UTF-8
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("sha256"), str)}


def _record(item: Downloaded) -> None:
    records = read_records()
    entry = asdict(item)
    entry["path"] = str(item.path)
    records[item.name] = entry
    with atomic_path(record_path()) as tmp:
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")


def cached_checkpoint(name: str, repo_id: str = REPO_ID) -> Optional[Path]:
    """The local file of an authors' checkpoint fetched earlier with :func:`download`, or None
    when it is not in the cache. Never touches the network; a cached file must still match the
    SHA-256 recorded when it was downloaded.

    Raises:
        HubError: ``name`` is not a checkpoint name, or huggingface_hub is not installed.
        CheckpointError: the cached file was not verified by ``mambairv2 download``.
    """
    hf = _hf()
    for repo_file in _candidates(name):
        try:
            local = Path(hf.hf_hub_download(repo_id, repo_file, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached (or no such name)
            continue
        if not local.is_file():
            raise CheckpointError(f"{name}: the cached {repo_file} ({local}) is not a file; remove it and run "
                                  f"'mambairv2 download {name}'")
        try:
            known = read_records().get(name_of(repo_file))
        except HubError as exc:  # a name that is cached but cannot be checked: not "unknown"
            raise CheckpointError(str(exc)) from None
        if known is None:
            raise CheckpointError(f"{name}: the cached {repo_file} was not verified by "
                                  f"'mambairv2 download {name}'; run it")
        if known["sha256"] != sha256_of(local):
            raise CheckpointError(f"{name}: the cached {repo_file} changed since it was verified (damaged or "
                                  f"altered); 'mambairv2 download {name}' replaces it")
        return local
    return None


def _reason(exc: Optional[BaseException]) -> str:
    if exc is None:
        return "unknown error"
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.split(" Traceback")[0]
    return f"{type(exc).__name__}: {text[:200]}"
