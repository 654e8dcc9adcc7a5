"""What is wrong with a path that should name an existing folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


def folder_problem(path: Union[str, "os.PathLike[str]"]) -> Optional[str]:
    """``"no such folder"``, ``"not a folder"`` (it exists as something else), or None."""
    path = Path(path)
    if path.is_dir():
        return None
    return "not a folder" if path.exists() else "no such folder"
