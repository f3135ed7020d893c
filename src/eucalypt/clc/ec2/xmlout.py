"""Minimal helpers for writing XML text (output only; nothing here parses XML).

The EC2 serializer builds documents as a list of ``str`` chunks joined once at the end;
these helpers make the text safe to put between tags.
"""

from __future__ import annotations

import re

__all__ = ["XML_DECLARATION", "escape_text"]

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# Characters needing work in element text: the markup characters, CR (XML parsers turn a
# literal CR into LF, a character reference survives), and everything XML 1.0 cannot carry
# at all (C0 controls other than TAB/LF/CR, lone surrogates, U+FFFE/U+FFFF).
_NEEDS_ESCAPE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_REPLACEMENTS = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_UNREPRESENTABLE = "\ufffd"


def _replace(match: re.Match[str]) -> str:
    return _REPLACEMENTS.get(match.group(), _UNREPRESENTABLE)


def escape_text(text: str) -> str:
    """``text`` made safe as XML element content.

    ``& < >`` become entities and CR a character reference; characters XML 1.0 cannot
    represent are replaced by U+FFFD (a well-formed document beats a faithful one).
    Returns ``text`` itself (no copy) when nothing needs escaping.
    """
    if _NEEDS_ESCAPE.search(text) is None:
        return text
    return _NEEDS_ESCAPE.sub(_replace, text)
