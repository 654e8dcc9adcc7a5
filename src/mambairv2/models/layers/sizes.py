"""State-dict sizes counted from hyper-parameters alone: how many tensors and values a module
of given widths holds, without building it (a configuration that claims a huge network costs
nothing to count, so it is compared with a file's tensors before anything is allocated)."""
from __future__ import annotations

from typing import NamedTuple


class Size(NamedTuple):
    """Tensors and values (elements) of a state dict or a part of one."""

    tensors: int
    values: int

    def __add__(self, other: "Size") -> "Size":  # type: ignore[override]
        return Size(self.tensors + other.tensors, self.values + other.values)

    def times(self, n: int) -> "Size":
        """``n`` copies of this part."""
        return Size(self.tensors * n, self.values * n)


NOTHING = Size(0, 0)


def conv(cin: int, cout: int, k: int, groups: int = 1, bias: bool = True) -> Size:
    """A ``k×k`` ``nn.Conv2d``."""
    return Size(1 + bias, cout * (cin // groups) * k * k + (cout if bias else 0))


def linear(cin: int, cout: int, bias: bool = True) -> Size:
    """An ``nn.Linear``."""
    return Size(1 + bias, cout * cin + (cout if bias else 0))


def norm(dim: int) -> Size:
    """A LayerNorm over ``dim`` channels."""
    return Size(2, 2 * dim)


def table(*shape: int) -> Size:
    """One tensor (a parameter, an embedding or a persistent buffer) of ``shape``."""
    values = 1
    for n in shape:
        values *= n
    return Size(1, values)


def residual_conv(dim: int, kind: str) -> Size:
    """The conv closing a group and the body (``1conv``, or ``3conv``: dim/4, 1×1, back)."""
    if kind == "1conv":
        return conv(dim, dim, 3)
    q = dim // 4
    return conv(dim, q, 3) + conv(q, q, 1) + conv(q, dim, 3)
