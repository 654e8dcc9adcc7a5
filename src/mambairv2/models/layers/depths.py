"""The depth of every residual group, read from a state dict's keys (both families' groups are
``layers.<g>.residual_group.<blocks>.<j>.``)."""
from __future__ import annotations

import re
from typing import Iterable, Tuple


def group_depths(keys: Iterable[str], blocks: str) -> Tuple[int, ...]:
    """Blocks per group, in group order, for block lists named ``blocks`` (``layers`` in
    MambaIRv2, ``blocks`` in MambaIR). ValueError when the group indices have a gap."""
    pattern = re.compile(rf"layers\.(\d+)\.residual_group\.{re.escape(blocks)}\.(\d+)\.")
    depth_of = {}
    for key in keys:
        m = pattern.match(key)
        if m:
            g, j = int(m.group(1)), int(m.group(2))
            depth_of[g] = max(depth_of.get(g, 0), j + 1)
    groups = sorted(depth_of)
    if groups != list(range(len(groups))):
        raise ValueError(f"group indices are not contiguous: {groups}")
    return tuple(depth_of[g] for g in groups)
