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
also the staff's "friendly". The defaults (``data/themes.yaml``) cover nine CX
themes in English and Italian.

A comment of unknown language (``None``) or of a language the taxonomy lacks is matched
against the keywords of every language of the taxonomy, each normalised its own way.

An unreadable or invalid file raises :class:`TaxonomyError` naming the file and the
offending entry.

Cost: matching is one dictionary lookup per token and candidate phrase length (keywords
are indexed by their first token), a few microseconds per comment (see
tests/bench/bench_text.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pipeline.text.normalize import Forms, forms, phrase_matches, tokens

DEFAULT_TAXONOMY = Path(__file__).parent / "data" / "themes.yaml"

ThemeName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")]
LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class TaxonomyError(ValueError):
    """A taxonomy file that cannot be used: unreadable, not YAML, or not the expected shape."""


class Taxonomy(BaseModel):
    """Validated taxonomy: theme -> language -> keywords (order kept: it is the output order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(default=1, ge=1, le=1)
    themes: dict[ThemeName, dict[LanguageCode, list[Keyword]]] = Field(min_length=1)

    @classmethod
    def load(cls, path: Path | str = DEFAULT_TAXONOMY) -> Taxonomy:
        """Read and validate a YAML taxonomy; :class:`TaxonomyError` says what is wrong."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TaxonomyError(f"taxonomy {path}: cannot read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise TaxonomyError(f"taxonomy {path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, Mapping):
            raise TaxonomyError(f"taxonomy {path}: expected a mapping with 'themes' at the top")
        try:
            taxonomy = cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise TaxonomyError(f"taxonomy {path}: {problems}") from exc
        for theme, per_language in taxonomy.themes.items():
            if not any(per_language.values()):
                raise TaxonomyError(f"taxonomy {path}: themes.{theme}: no keywords")
            for language, keywords in per_language.items():
                for keyword in keywords:
                    if not tokens(keyword, language):
                        raise TaxonomyError(
                            f"taxonomy {path}: themes.{theme}.{language}: keyword "
                            f"{keyword!r} has no letters or digits"
                        )
        return taxonomy

    @property
    def languages(self) -> tuple[str, ...]:
        found: dict[str, None] = {}
        for per_language in self.themes.values():
            found.update(dict.fromkeys(per_language))
        return tuple(found)


# a form of the first word -> [(forms per word, theme index)], longest phrases first
_Index = dict[str, list[tuple[tuple[Forms, ...], int]]]


class ThemeMatcher:
    """Themes of a comment, in taxonomy order, each at most once."""

    def __init__(self, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy or Taxonomy.load()
        self.themes: tuple[str, ...] = tuple(self.taxonomy.themes)
        self._index: dict[str, _Index] = {}
        for language in self.taxonomy.languages:
            index: _Index = {}
            for position, theme in enumerate(self.themes):
                for keyword in self.taxonomy.themes[theme].get(language, []):
                    key = tuple(forms(keyword, language))
                    for first in key[0]:
                        index.setdefault(first, []).append((key, position))
            for entries in index.values():
                entries.sort(key=lambda entry: -len(entry[0]))
            self._index[language] = index

    def _match(self, text: str, language: str, found: set[int]) -> None:
        """Leftmost-longest matches: a phrase hides the shorter keywords inside it
        ("user friendly" is ease of use, not the staff's "friendly")."""
        index = self._index[language]
        text_forms = forms(text, language)
        i, n = 0, len(text_forms)
        while i < n:
            best: tuple[int, int] | None = None  # (length, theme index)
            for form in text_forms[i]:
                for key, position in index.get(form, ()):  # longest first
                    if best is not None and len(key) <= best[0]:
                        break
                    if phrase_matches(key, text_forms, i):
                        best = (len(key), position)
                        break
            if best is None:
                i += 1
            else:
                found.add(best[1])
                i += best[0]

    def match(self, text: str, language: str | None) -> list[str]:
        """Themes whose keywords occur in ``text`` (normalised for ``language``)."""
        found: set[int] = set()
        if language in self._index:
            self._match(text, language, found)
        else:
            for known in self._index:
                self._match(text, known, found)
        return [self.themes[position] for position in sorted(found)]
