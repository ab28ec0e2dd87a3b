"""Text helpers: HTML to visible text, and the one-line form of any message.

Platform text is hostile: these functions never raise on odd input and never grow
their output beyond what they were given.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Default length of a one-line message (an error, a reason phrase from a server).
ONE_LINE_MAX = 200


def one_line(text: str, limit: int = ONE_LINE_MAX) -> str:
    """``text`` on one line (runs of white space folded), cut to ``limit`` with ``…``."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_SKIP_TAGS = frozenset({"script", "style", "template", "head", "title", "iframe", "object"})
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "aside", "nav", "main",
        "blockquote", "pre", "ul", "ol", "dl", "table", "figure", "figcaption", "hr",
        "h1", "h2", "h3", "h4", "h5", "h6", "address", "details", "summary",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"br", "li", "tr", "dt", "dd"})


class _TextExtractor(HTMLParser):
    """Visible text of an HTML fragment, keeping paragraph and line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth += 1
            return
        self._break(tag)
        if tag in _LINE_TAGS and not self._skip_depth:
            self._parts.append("\n")
        if tag == "img" and not self._skip_depth:
            # The alt text is what a reader sees in place of the picture.
            alt = dict(attrs).get("alt")
            if alt:
                self._parts.append(f" {alt} ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._parts.append(data)

    def _break(self, tag: str) -> None:
        if self._skip_depth:
            return
        if tag in _PARAGRAPH_TAGS:
            self._parts.append("\n\n")

    def text(self) -> str:
        return tidy("".join(self._parts))


def tidy(text: str) -> str:
    """Collapse runs of spaces in lines and of blank lines, as a browser would show it."""
    lines = [" ".join(line.split()) for line in text.replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_to_text(fragment: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(fragment)
    extractor.close()
    return extractor.text()


def escape_line_breaks(text: str) -> str:
    """``text`` on one line, reversibly: backslash, CR and LF written as escapes (a log
    line keeps a traceback's lines readable and one record stays one line)."""
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def first_line(text: str) -> str:
    """The first line of ``text`` with its surrounding space removed ('' when empty)."""
    stripped = text.strip()
    return stripped.splitlines()[0].strip() if stripped else ""
