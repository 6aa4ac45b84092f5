"""The text a model sees for a ticket: subject and description as plain text, and its hash.

Freshdesk descriptions are HTML. :func:`html_to_text` keeps the words and the line structure
(paragraphs, line breaks, list items) and drops markup, scripts and styles. :func:`ticket_text`
joins subject and description; :func:`text_hash` identifies exactly what a prediction saw.
"""

from __future__ import annotations

import hashlib
import math
import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th", "tr", "ul",
})  # fmt: skip
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_LOOKS_LIKE_HTML = re.compile(r"<[a-zA-Z!/][^>]*>|&(?:[a-zA-Z]+|#\d+|#x[0-9a-fA-F]+);")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skipping += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _tidy(text: str) -> str:
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_text(html: str | None) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles removed, entities decoded.

    Block elements (``<p>``, ``<div>``, ``<br>``, ``<li>`` ...) become line breaks; runs of spaces
    collapse to one and blank lines to a single empty line. Text without markup is only tidied
    (so ``"a < b"`` stays as it is). ``None`` gives ``""``.
    """
    if not html:
        return ""
    if not _LOOKS_LIKE_HTML.search(html):
        return _tidy(html)
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return _tidy("".join(parser.parts))


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return html_to_text(str(value))


def ticket_text(subject: object, description: object) -> str:
    """The model's input for one ticket: subject, a blank line, then the description as plain text.

    Missing parts (``None``, NaN, empty) are left out. The subject comes first, so it survives
    truncation to the model's maximum length.
    """
    return "\n\n".join(part for part in (_clean(subject), _clean(description)) if part)


def text_hash(text: str) -> str:
    """SHA-256 hex digest of the UTF-8 text: which exact input a prediction saw."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
