"""Language of a comment with `lingua <https://pypi.org/project/lingua-language-detector/>`_.

The detector is restricted to a configurable set of languages (default English and
Italian): fewer candidates mean fewer mistakes on short comments and less work. It is
built once, with its n-gram models loaded up front, and shared by every call.

Measured (tests/bench/bench_text.py, 10,000 simulator comments of ~40 characters, on
this project's 2-core machine): low-accuracy mode ~24 µs per comment, high-accuracy mode
with preloaded models ~45 µs (without preloading ~160 µs: models of some n-gram orders
load lazily). High accuracy costs more than the whole scoring stage spends on an event
(~41 µs), and gained nothing measurable here: both modes detect 100% of the simulator's
comments and 221 of the 222 labelled test comments (tests/test_text.py). So low accuracy
is the default; ``low_accuracy=False`` selects high accuracy, with preloaded models.
A caller that knows the respondent's language can skip detection altogether (see
:meth:`pipeline.text.analyze.CommentAnalyzer.analyze`).

Too-short text (fewer than ``min_letters`` letters, e.g. "ok", "10/10") and text lingua
cannot decide on give ``None``.
"""

from __future__ import annotations

from collections.abc import Iterable

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "it")


def _language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code.lower()))
    except ValueError as exc:
        raise ValueError(f"unknown ISO 639-1 language code {code!r}") from exc


class LanguageDetector:
    """ISO 639-1 code (``"en"``, ``"it"``) of a comment, among the configured languages."""

    def __init__(
        self,
        languages: Iterable[str] = DEFAULT_LANGUAGES,
        *,
        min_letters: int = 3,
        low_accuracy: bool = True,
    ) -> None:
        codes = tuple(dict.fromkeys(code.lower() for code in languages))
        if not codes:
            raise ValueError("at least one language is needed")
        self.languages = codes
        self.min_letters = min_letters
        if len(codes) == 1:  # lingua needs two candidates; one language is a constant
            self._only: str | None = codes[0]
            _language(codes[0])
            return
        self._only = None
        builder = LanguageDetectorBuilder.from_languages(*(_language(c) for c in codes))
        builder = (
            builder.with_low_accuracy_mode()
            if low_accuracy
            else builder.with_preloaded_language_models()
        )
        self._detector = builder.build()

    def detect(self, text: str) -> str | None:
        """The language code of ``text``, or None when it is too short or undecidable."""
        if sum(char.isalpha() for char in text) < self.min_letters:
            return None
        if self._only is not None:
            return self._only
        found = self._detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_1.name.lower()
