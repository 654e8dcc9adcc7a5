"""Names shown in one-line messages: control characters escaped, so that a file name holding a
newline (or a carriage return, a tab, an escape sequence) never splits or rewrites the line
that reports on it."""
from __future__ import annotations

import re

#: C0 and C1 control characters, DEL, and Unicode's line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: "re.Match[str]") -> str:
    c = match.group(0)
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: object) -> str:
    """``str(text)`` with every control character written as ``\\n``, ``\\r``, ``\\t``,
    ``\\xNN`` or ``\\uNNNN``: always one line, the rest of the text unchanged."""
    return _CONTROL.sub(_escape, str(text))


def brief(text: object, limit: int = 80) -> str:
    """:func:`printable` ``text``, cut to ``limit`` characters (``…`` marking the cut): a name
    from a file the user did not write, shown inside a message or a table row."""
    shown = printable(text)
    return shown if len(shown) <= limit else shown[:limit - 1] + "…"
