"""Planning a batch restore: which files the inputs (files, folders, glob patterns) name,
where each output goes, which to skip, and which rank of a distributed run takes which file.

Nothing here reads pixels or loads a model; every path question is answered without raising
(a symlink loop or a dangling link becomes a job that fails with a one-line reason).
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..utils.atomic import check_writable, remove_stale_parts
from ..utils.imageio import EXTENSIONS, is_image_file

HIDDEN_PREFIX = "."


@dataclass
class Job:
    """One input file and where its output goes."""

    src: Path
    rel: Path  # output path relative to OUT_DIR, before suffix/format changes
    out: Optional[Path] = None
    problem: Optional[str] = None  # a reason to fail before reading
    skip: Optional[str] = None  # a reason not to restore it


def real(path: Path) -> str:
    """The canonical path, following links as far as they go; never raises (symlink loops
    resolve to themselves)."""
    return os.path.realpath(path)


def is_inside(path: Path, folder: str) -> bool:
    """Whether ``path`` (resolved) lies in the resolved folder ``folder``."""
    resolved = real(path)
    try:
        return os.path.commonpath([resolved, folder]) == folder
    except ValueError:  # different drives
        return False


def scan_folder(folder: Path, recursive: bool, out_dir: str) -> List[Path]:
    """Image files of ``folder`` (see :func:`mambairv2.utils.imageio.is_image_file`), sorted; hidden
    files are left out, and so is the output folder when it is a subfolder (earlier outputs are
    not inputs). Symlinked folders are not followed (no loops); broken links and link loops with
    an image name are kept, to be reported."""
    exclude = None if is_inside(folder, out_dir) else out_dir
    found: List[Path] = []
    for root, dirs, files in os.walk(folder):
        rootp = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(HIDDEN_PREFIX)
                         and not (exclude and is_inside(rootp / d, exclude))) if recursive else []
        for name in sorted(files):
            path = rootp / name
            if not name.startswith(HIDDEN_PREFIX) and is_image_file(path):
                found.append(path)
    return found


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_entry(path: Path) -> bool:
    """Exists as a file, or is a link (possibly dangling or a loop) that is not a folder."""
    try:
        return path.is_file() or (path.is_symlink() and not _is_dir(path))
    except OSError:
        return False


def collect_jobs(inputs: Sequence[str], recursive: bool, out_dir: Path) -> Tuple[List[Job], List[Tuple[str, str]]]:
    """Jobs for the given inputs (each file once, in input order, folders sorted), and
    ``(input, reason)`` for inputs that match nothing."""
    jobs: List[Job] = []
    missing: List[Tuple[str, str]] = []
    out_resolved = real(out_dir)
    seen: set = set()

    def add(path: Path, rel: Path) -> None:
        key = real(path)
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path, rel))

    for text in inputs:
        path = Path(text)
        if _is_dir(path):
            files = scan_folder(path, recursive, out_resolved)
            if not files:
                missing.append((text, "folder holds no images" + ("" if recursive else " (try --recursive)")))
            for f in files:
                add(f, f.relative_to(path))
        elif _is_entry(path) or os.path.lexists(path):
            add(path, Path(path.name))
        elif glob.has_magic(text):
            files = [Path(m) for m in sorted(glob.glob(text, recursive=recursive)) if _is_entry(Path(m))]
            if not files:
                missing.append((text, "pattern matches no files"))
            for f in files:
                add(f, Path(f.name))
        else:
            missing.append((text, "no such file or folder"))
    return jobs, missing


def output_extension(rel: Path, ext: Optional[str], upscale: int = 2) -> str:
    """The output extension of an input named ``rel``.

    ``ext``: a format word (``png``, ``jpg``, ``webp``…), ``same`` (the input's, PNG when it is
    not writable), or None: ``same`` for super-resolution, lossless PNG for models that do not
    upscale (denoising, JPEG artifact removal: re-encoding as JPEG would add artifacts back).
    """
    if ext is None:
        ext = "same" if upscale > 1 else "png"
    if ext != "same":
        return "." + ext.lower().lstrip(".")
    return rel.suffix if rel.suffix.lower() in EXTENSIONS else ".png"


def plan_outputs(jobs: List[Job], out_dir: Path, ext: Optional[str], suffix: str,
                 overwrite: bool = False, upscale: int = 2, model_files: Sequence[Path] = ()) -> None:
    """Sets ``job.out`` (see :func:`output_extension`), and the reasons not to write some:

    - an input that is the planned output of another input (an earlier run's output lying in
      the input folder) is skipped, not restored again (and may be overwritten as an output);
    - an output that is an input is never replaced: skipped (it exists), or failed with
      ``--overwrite``;
    - two inputs with the same output: the second fails;
    - an output that is one of ``model_files`` (the model's file, an input too) fails.
    """
    for job in jobs:
        job.out = out_dir / job.rel.parent / f"{job.rel.stem}{suffix}{output_extension(job.rel, ext, upscale)}"
    output_of: Dict[str, Path] = {}
    for job in jobs:
        output_of.setdefault(real(job.out), job.src)
    for job in jobs:
        owner = output_of.get(real(job.src))
        if owner is not None and real(owner) != real(job.src):
            job.skip = f"is the output of {owner}"
    taken: Dict[str, Path] = {}
    inputs = {real(j.src) for j in jobs if j.skip is None}
    inodes = {_inode(j.src) for j in jobs if j.skip is None} - {None}  # hard links to an input
    models = {real(m) for m in model_files}
    model_inodes = {_inode(m) for m in model_files} - {None}
    for job in jobs:
        key = real(job.out)
        if job.skip:
            continue
        if key in models or _inode(job.out) in model_inodes:
            job.problem = f"the output {job.out} would replace the model file; choose another -o or a --suffix"
        elif key in inputs or _inode(job.out) in inodes:
            if overwrite:
                job.problem = f"the output {job.out} would replace an input; choose another -o or a --suffix"
            else:
                job.skip = f"{job.out} exists and is an input"
        elif key in taken:
            job.problem = f"the output {job.out} is already the output of {taken[key]}"
        else:
            taken[key] = job.src


def _inode(path: Path) -> Optional[tuple]:
    """``(device, inode)`` of an existing file, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def mark_existing(jobs: Iterable[Job], overwrite: bool) -> None:
    """Skips the jobs whose output exists already (unless ``overwrite``): reruns resume."""
    if overwrite:
        return
    for job in jobs:
        if job.problem is None and job.skip is None and job.out is not None and os.path.lexists(job.out):
            job.skip = f"{job.out} exists (--overwrite replaces it)"


def prepare_output_folders(jobs: Iterable[Job], out_dir: Path) -> List[Path]:
    """Before any image is computed: creates the output folders of the jobs still to do and
    proves each is writable (a job whose folder is not gets ``problem``), and removes the
    temporary files interrupted runs left for these outputs. Returns the removed files.

    Raises:
        OSError: ``out_dir`` itself cannot be created or written.
    """
    todo = [j for j in jobs if j.problem is None and j.skip is None and j.out is not None]
    check_writable(out_dir)
    checked: Dict[Path, Optional[str]] = {}
    for job in todo:
        folder = job.out.parent
        if folder not in checked:
            try:
                check_writable(folder)
                checked[folder] = None
            except OSError as exc:
                checked[folder] = f"cannot write to {folder} ({exc.strerror or exc})"
        if checked[folder]:
            job.problem = checked[folder]
    return remove_stale_parts(j.out for j in jobs if j.out is not None)


def shard(jobs: Sequence[Job], rank: int, world: int) -> List[Job]:
    """The jobs of ``rank`` among ``world`` ranks: every ``world``-th from ``rank``, so each job
    belongs to exactly one rank, and the split depends only on the (sorted) job list."""
    return list(jobs[rank::world])
