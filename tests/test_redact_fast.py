"""The redactor's shortcuts give exactly what the passes they skip would have given.

:meth:`Redactor.redact_with_counts <pipeline.redact.Redactor.redact_with_counts>` returns
a comment without ``@``, digits or extra patterns as it is, and ``_redact_once`` skips the
card and phone passes when a comment has fewer than 8 ASCII digits. Compared here with a
copy of the code from before those shortcuts (``_ReferenceRedactor``), on the property
tests' comments, on digit-heavy noise and on the simulator's comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.redact import (
    _DIGIT,
    Redactor,
    _redact_cards,
    _redact_emails,
    _redact_extra,
    _redact_ibans,
    _redact_phones,
)
from pipeline.simulator import FeedbackSimulator, SimulatorConfig
from tests.test_redact import COMMENTS, FRAGMENTS

_EXTRAS = {"customer_id": r"CUST-\d{6}", "code": r"(?i)\bcode\w*", "digits": r"\d{2}X"}


class _ReferenceRedactor(Redactor):
    """The redactor as it was: every pass whenever its trigger character is present."""

    def redact_with_counts(self, text: str) -> tuple[str, dict[str, int]]:
        total: dict[str, int] = {}
        for _ in range(len(text) + 1):
            text, counts = self._redact_once(text)
            if not counts:
                break
            for kind, n in counts.items():
                total[kind] = total.get(kind, 0) + n
        return text, total

    def _redact_once(self, text: str) -> tuple[str, dict[str, int]]:
        counts: dict[str, int] = {}
        if "@" in text:
            text = _redact_emails(text, counts)
        has_digits = _DIGIT.search(text) is not None
        if has_digits:
            text = _redact_ibans(text, counts)
            text = _redact_cards(text, counts)
        for extra in self._extras:
            text = _redact_extra(extra, text, counts)
        if has_digits:
            text = _redact_phones(text, counts)
        return text, counts


_PAIRS = [
    (Redactor(), _ReferenceRedactor()),
    (Redactor(_EXTRAS), _ReferenceRedactor(_EXTRAS)),
]

# few digits around separators: the texts where the digit count decides
_FEW_DIGITS = st.text(alphabet="0123456789 .-/+()@€,:xX", max_size=24)
_TEXTS = st.one_of(
    COMMENTS,
    _FEW_DIGITS,
    st.lists(st.one_of(FRAGMENTS, _FEW_DIGITS), max_size=6).map("".join),
    st.text(max_size=40),
)


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_same_redaction_and_counts_as_before(text: str) -> None:
    for redactor, reference in _PAIRS:
        assert redactor.redact_with_counts(text) == reference.redact_with_counts(text)


@pytest.mark.parametrize(
    "text",
    [
        "1234567",  # 7 digits: skipped
        "12345678",  # 8: a phone-shaped number is looked for
        "347 123 456",  # 9 digits, an old Italian mobile
        "+1 (0) 23 45",
        "call 3471234567 or 0039 347 1234567",
        "IT60 X054 2811 1010 0000 0123 456 then 1234",
        "CUST-123456 4111 1111 1111 1111",
        "12X 34X 5678",
    ],
)
def test_same_redaction_near_the_digit_threshold(text: str) -> None:
    for redactor, reference in _PAIRS:
        assert redactor.redact_with_counts(text) == reference.redact_with_counts(text)


def test_same_redaction_of_the_simulators_comments() -> None:
    sim = FeedbackSimulator(SimulatorConfig(seed=3, comment_probability=1.0))
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    comments = [sim.next_event(start + timedelta(seconds=i))["comment"] for i in range(3000)]
    assert sum(1 for c in comments if _DIGIT.search(c)) > 100  # some with digits
    for redactor, reference in _PAIRS:
        for comment in comments:
            assert redactor.redact_with_counts(comment) == reference.redact_with_counts(comment)
