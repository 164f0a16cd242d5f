"""Themes of a comment from a configurable taxonomy (theme -> keywords/phrases per language).

The taxonomy is YAML::

    version: 1
    themes:
      wait_time:
        en: ["on hold", "wait", "queue"]
        it: ["in attesa", "aspettare", "coda"]

Theme names are lower-case identifiers; languages are ISO 639-1 codes; every keyword is a
non-empty string. Keywords and comments are normalised alike (:mod:`.normalize`: lower
case, accents stripped, simplemma lemmas), and a keyword matches where its tokens appear
contiguously in the comment's tokens: ``"charge twice"`` matches "I was charged twice",
``"fattura"`` matches "le fatture". Matches are leftmost-longest and do not overlap, so a
phrase hides the shorter keywords inside it: "user friendly" is ease of use only, not
also the staff's "friendly". A phrase does not reach across the end of a sentence (``.``,
``!``, ``?`` or ``;`` before a space, or a line break): "Help came from the first. Call
me back" is not the resolution's "first call". The defaults (``data/themes.yaml``) cover nine CX
themes in English and Italian.

A comment of unknown language (``None``) or of a language the taxonomy lacks is matched
against the keywords of every language of the taxonomy, each normalised its own way.

The file is read and validated by :class:`pipeline.text.taxonomy.Taxonomy` (an unreadable
or invalid one raises :class:`~pipeline.text.taxonomy.TaxonomyError` naming the file and
the offending entry); :class:`ThemeMatcher` takes the validated themes as plain data, so
that the analysis child (:mod:`.offload`), which gets them from its worker, imports no
pydantic (~17 MiB of its resident memory).

Cost: matching is one dictionary lookup per token and candidate phrase length (keywords
are indexed by their first token), a few microseconds per comment (see
tests/bench/bench_text.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.text.normalize import SENTENCE_END, Forms, forms, word_forms, words

DEFAULT_TAXONOMY = Path(__file__).parent / "data" / "themes.yaml"

#: A validated taxonomy's themes: theme -> language -> keywords (theme order is the
#: output order), as :attr:`pipeline.text.taxonomy.Taxonomy.themes` holds them.
Themes = Mapping[str, Mapping[str, Sequence[str]]]


# a form of the first word -> [(forms per word, theme index)] of multi-word keywords
_Index = dict[str, list[tuple[tuple[Forms, ...], int]]]
#: per word of a comment: its forms, the theme of a one-word keyword it matches (lowest
#: theme index; -1 for none), the multi-word keywords that may start at it (longest first)
_WordInfo = tuple[Forms, int, tuple[tuple[tuple[Forms, ...], int], ...]]
#: Put where a sentence ends (:data:`SENTENCE_END`): one word, part of no keyword.
_SENTENCE_BREAK = " 0sentencebreak0 "
#: Words remembered per language (:meth:`ThemeMatcher._info`), then the memory starts over.
WORD_CACHE = 100_000


def _rest_matches(key: tuple[Forms, ...], infos: list[_WordInfo], start: int) -> bool:
    """Whether the words after the first of the phrase ``key`` follow the word at
    ``start`` (its first word matches: the phrase is one of that word's candidates)."""
    for k in range(1, len(key)):  # noqa: SIM110 - cheaper than all() over a genexpr
        if key[k].isdisjoint(infos[start + k][0]):
            return False
    return True


class ThemeMatcher:
    """Themes of a comment, in taxonomy order, each at most once."""

    def __init__(self, themes: Themes) -> None:
        """``themes``: a validated taxonomy's (:meth:`Taxonomy.load
        <pipeline.text.taxonomy.Taxonomy.load>`)."""
        self.keywords = themes  #: theme -> language -> keywords
        self.themes: tuple[str, ...] = tuple(themes)
        self._single: dict[str, dict[str, int]] = {}
        self._multi: dict[str, _Index] = {}
        self._words: dict[str, dict[str, _WordInfo]] = {}
        languages = dict.fromkeys(lang for per_language in themes.values() for lang in per_language)
        for language in languages:
            single: dict[str, int] = {}
            multi: _Index = {}
            for position, theme in enumerate(self.themes):
                for keyword in themes[theme].get(language, []):
                    key = tuple(forms(keyword, language))
                    for first in key[0]:
                        if len(key) == 1:
                            single.setdefault(first, position)  # the first theme wins
                        else:
                            multi.setdefault(first, []).append((key, position))
            self._single[language] = single
            self._multi[language] = multi
            self._words[language] = {}

    def _info(self, word: str, language: str) -> _WordInfo:
        """What matching needs to know about ``word``, computed once per word and language
        (a comment costs one dictionary lookup per word once its words were seen)."""
        cache = self._words[language]
        info = cache.get(word)
        if info is None:
            word_forms_ = word_forms(word, language)
            single, multi = self._single[language], self._multi[language]
            positions = [single[f] for f in word_forms_ if f in single]
            phrases = {entry for f in word_forms_ for entry in multi.get(f, ())}
            ordered = tuple(sorted(phrases, key=lambda entry: (-len(entry[0]), entry[1])))
            info = (word_forms_, min(positions, default=-1), ordered)
            if len(cache) >= WORD_CACHE:
                cache.clear()
            cache[word] = info
        return info

    def _match(self, text_words: list[str], language: str, found: set[int]) -> bool:
        """Leftmost-longest matches: a phrase hides the shorter keywords inside it
        ("user friendly" is ease of use, not the staff's "friendly"). Between matches of
        the same length at one word, the theme listed first wins.

        Only the words that start a keyword are visited (most words of a comment start
        none); ``start`` is the first word not yet covered by a match."""
        infos = list(map(self._words[language].get, text_words))
        if not all(infos):  # words not seen yet (None; an info is a non-empty tuple)
            infos = [
                info or self._info(word, language)
                for word, info in zip(text_words, infos, strict=True)
            ]
        n = len(infos)
        start = 0
        phrased = False
        for i in [k for k, info in enumerate(infos) if info[1] >= 0 or info[2]]:
            if i < start:
                continue  # inside a phrase matched before
            _, single, phrases = infos[i]
            start = i + 1
            for key, position in phrases:  # longest first
                if i + len(key) <= n and _rest_matches(key, infos, i):
                    found.add(position)
                    start = i + len(key)
                    phrased = True
                    break
            else:
                if single >= 0:
                    found.add(single)
        return phrased

    def match(
        self, text: str, language: str | None, text_words: list[str] | None = None
    ) -> list[str]:
        """Themes whose keywords occur in ``text`` (normalised for ``language``);
        ``text_words``: ``words(text)`` when the caller has them already."""
        if text_words is None:
            text_words = words(text)
        languages = (language,) if language in self._words else tuple(self._words)
        found: set[int] = set()
        phrased = False
        for known in languages:
            phrased |= self._match(text_words, known, found)
        if phrased and SENTENCE_END.search(text) is not None:
            # Again with a word that is part of no keyword where each sentence ends, so
            # that no phrase matches across it. Only when a phrase matched: without one,
            # the marks change nothing (they only take phrases away). Each sentence
            # matched on its own took 7.6 against 3.4 µs per comment of the bench
            # dataset, the marks always 6.2.
            found.clear()
            marked = words(SENTENCE_END.sub(_SENTENCE_BREAK, text))
            for known in languages:
                self._match(marked, known, found)
        return [self.themes[position] for position in sorted(found)]
