"""The redaction filter keeps registered credentials out of every log record."""

import base64
import logging

from triage import redaction

SECRET = "redaction-test-key-9f8e7d"


def test_registered_secret_and_its_basic_auth_form_are_masked(caplog):
    redaction.register_secret(SECRET)
    redaction.install()
    caplog.handler.addFilter(redaction.RedactingFilter())
    basic = base64.b64encode(f"{SECRET}:X".encode()).decode()
    log = logging.getLogger("triage.test")
    with caplog.at_level(logging.DEBUG):
        log.info("key=%s", SECRET)
        log.warning("Authorization: Basic %s", basic)
        try:
            raise RuntimeError(f"failed with {SECRET}")
        except RuntimeError:
            log.exception("boom")
    text = caplog.text
    assert SECRET not in text
    assert basic not in text
    assert text.count(redaction.MASK) >= 3


def test_redact_leaves_other_text_alone():
    redaction.register_secret(SECRET)
    assert redaction.redact("nothing secret here") == "nothing secret here"
    assert redaction.redact(f"a {SECRET} b") == f"a {redaction.MASK} b"


def test_short_values_are_not_registered():
    redaction.register_secret("X")
    assert redaction.redact("X marks the spot") == "X marks the spot"
