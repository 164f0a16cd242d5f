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

**Function-word shortcut** (English and Italian only): a comment with function words of
one language (``the``, ``was``, ``my`` / ``il``, ``che``, ``non``...; words of both
languages such as ``a``, ``in``, ``no``, ``me``, ``so`` are in neither list) and none of
the other is that language, without calling lingua; anything else (no function word, a
mix, other configured languages) goes to lingua. About 1 µs instead of ~24 µs. It decides
215 of the 222 labelled comments and 2,162 of 2,500 simulator comments, and every one of
those decisions agrees with the labels and with lingua (tests/test_text.py); the mean
cost of detection on the simulator's comments falls from ~24 µs to ~8 µs (~5 µs with the
comment's words shared with the rest of the analysis, see :meth:`LanguageDetector.detect`).
``shortcut=False`` turns it off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "it")


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# fmt: off
_FUNCTION_WORDS: dict[str, frozenset[str]] = {
    "en": _wordset("""
        the and was is are were of to my for with it this that you your they have has had
        not but very from be been at on an we our he she his her what when there their
        would could can will just after before about again still did does don didn isn
        wasn doesn any than then them who which why how only
    """),
    "it": _wordset("""
        il lo la gli le di da del della dei delle dello dal dalla che non per con una uno un
        sono ho ha hanno è e mi ci si ma più anche molto nel nella alla al sul questo questa
        perché ancora tutto dopo mai niente nessuno sempre stato stata se ne ed mio mia
        dell già poi quando
    """),
}
# fmt: on
_TOKEN = re.compile(r"[^\W\d_]+")


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
        shortcut: bool = True,
    ) -> None:
        codes = tuple(dict.fromkeys(code.lower() for code in languages))
        if not codes:
            raise ValueError("at least one language is needed")
        self.languages = codes
        self.min_letters = min_letters
        self._shortcut = shortcut and len(codes) >= 2 and set(codes) <= set(_FUNCTION_WORDS)
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

    def detect(self, text: str, text_words: list[str] | None = None) -> str | None:
        """The language code of ``text``, or None when it is too short or undecidable;
        ``text_words``: :func:`pipeline.text.normalize.words` of ``text`` when the caller
        has them already (the shortcut then splits nothing again)."""
        if not self._has_letters(text):
            return None
        if self._only is not None:
            return self._only
        if self._shortcut:
            found_by_words = self._by_function_words(text, text_words)
            if found_by_words is not None:
                return found_by_words
        found = self._detector.detect_language_of(text)
        return None if found is None else found.iso_code_639_1.name.lower()

    def _has_letters(self, text: str) -> bool:
        """Whether ``text`` has at least ``min_letters`` letters (``str.isalpha``), counting
        only as far as needed: comments start with letters, so usually three characters."""
        needed = self.min_letters
        if needed <= 0:
            return True
        for char in text:
            if char.isalpha():
                needed -= 1
                if not needed:
                    return True
        return False

    def _by_function_words(self, text: str, text_words: list[str] | None = None) -> str | None:
        """The language whose function words ``text`` has, when the others' it has none
        (one set of the comment's letter runs against each language's function words).

        The letter runs (``_TOKEN``) of ``text.lower()`` are its words (``normalize.words``,
        runs of letters and digits) split at digits: a word of letters only is one run."""
        if text_words is None:
            found = frozenset(_TOKEN.findall(text.lower()))
        elif all(map(str.isalpha, text_words)):
            found = frozenset(text_words)
        else:
            found = frozenset(_TOKEN.findall(" ".join(text_words)))
        with_words = [
            code for code in self.languages if not _FUNCTION_WORDS[code].isdisjoint(found)
        ]
        return with_words[0] if len(with_words) == 1 else None
