"""The clean-image folders that evaluate and degrade read (``--hr-dir``), checked once."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, Optional

from ..utils.text import printable
from .errors import CLIError


def hr_images(folder: str, flag: str = "--hr-dir",
              warn: Optional[Callable[[str], None]] = None) -> List[Path]:
    """The image files of ``folder``, sorted; other files are warned about one per line.

    Raises:
        CLIError: no such folder, or a folder without images (one line naming ``flag``).
    """
    from ..protocol.evaluate import list_images
    from ..protocol.task import EvaluationError

    try:
        images, others = list_images(folder)
    except EvaluationError as exc:
        raise CLIError(f"{flag} {exc}") from None
    for other in others:
        (warn or (lambda msg: print(msg, file=sys.stderr)))(printable(f"warning: ignored {other}: not an image file"))
    if not images:
        raise CLIError(f"{flag} {folder}: holds no images")
    return images


def clean_inputs(values: List[str], flag: str = "--hr-dir",
                 warn: Optional[Callable[[str], None]] = None) -> List[Path]:
    """The clean images that ``values`` name, as ``restore`` takes its inputs: folders (their
    image files, see :func:`hr_images`), image files, or glob patterns; each file once, in order.

    Raises:
        CLIError: a value that names nothing, a file that is not an image, a pattern that
            matches no image (one line naming ``flag``).
    """
    import glob

    from ..utils.imageio import is_image_file

    found: List[Path] = []
    for text in values:
        path = Path(text)
        if path.is_dir():
            found.extend(hr_images(text, flag, warn))
        elif path.exists():
            if not path.is_file():
                raise CLIError(f"{flag} {text}: not a regular file")
            if not is_image_file(path):
                raise CLIError(f"{flag} {text}: not an image file")
            found.append(path)
        elif glob.has_magic(text):
            matches = [Path(m) for m in sorted(glob.glob(text)) if Path(m).is_file() and is_image_file(Path(m))]
            if not matches:
                raise CLIError(f"{flag} {text}: the pattern matches no image files")
            found.extend(matches)
        else:
            raise CLIError(f"{flag} {text}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    by_resolved = {p.resolve(): p for p in reversed(found)}
    return [by_resolved[r] for r in unique]


def input_folders(images: List[Path]) -> List[Path]:
    """The folders holding ``images`` (for the output policy: an output folder is never one)."""
    return list(dict.fromkeys(p.parent for p in images))
