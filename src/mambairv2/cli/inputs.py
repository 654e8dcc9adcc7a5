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
