"""The text a model sees: HTML stripped to plain text, subject first, hashed exactly."""

import hashlib

import pytest

from triage.models.text import html_to_text, text_hash, ticket_text


def test_html_becomes_plain_text_with_line_structure():
    html = (
        "<div>Hello&nbsp;<b>team</b>,</div><p>the printer<br>is broken.</p>"
        "<ul><li>model X</li><li>floor 2 &amp; 3</li></ul>"
        "<script>alert('x')</script><style>p {color: red}</style>"
    )
    text = html_to_text(html)
    assert text == "Hello team,\n\nthe printer\nis broken.\n\nmodel X\n\nfloor 2 & 3"
    assert "alert" not in text and "color" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a < b and c > d", "a < b and c > d"),  # plain text is not parsed as markup
        ("x &amp;lt; y", "x &lt; y"),  # entities are decoded once, not twice
        ("  spaced \t out  \n\n\n\n next ", "spaced out\n\nnext"),
        (None, ""),
        ("", ""),
    ],
)
def test_html_to_text_edge_cases(raw, expected):
    assert html_to_text(raw) == expected


def test_ticket_text_joins_subject_and_description_and_skips_missing_parts():
    assert ticket_text("VPN down", "<p>since 9am</p>") == "VPN down\n\nsince 9am"
    assert ticket_text(None, "<p>only body</p>") == "only body"
    assert ticket_text("only subject", float("nan")) == "only subject"
    assert ticket_text(None, None) == ""


def test_text_hash_is_sha256_of_the_utf8_text():
    text = ticket_text("Drucker", "funktioniert nicht – bitte prüfen")
    assert text_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert text_hash(text) != text_hash(text + " ")
