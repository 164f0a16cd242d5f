"""Language of a comment with `lingua <https://pypi.org/project/lingua-language-detector/>`_.

The detector is restricted to a configurable set of languages (default English and
Italian): fewer candidates mean fewer mistakes on short comments and less work. It is
built once, with its n-gram models loaded up front, and shared by every call.

Measured on this machine (tests/bench/bench_text.py, simulator comments): high-accuracy
mode with preloaded models ~25 µs per comment; low-accuracy mode ~15 µs but it misreads
very short English comments ("ok fine") as Italian, and high-accuracy mode without
preloading ~160 µs (models of some n-gram orders load lazily). High accuracy with
preloading is the default; ``low_accuracy=True`` is there for deployments that need the
last microseconds.

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
        low_accuracy: bool = False,
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
