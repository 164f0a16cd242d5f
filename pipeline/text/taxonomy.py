"""The theme taxonomy file: read, validated, and what is wrong with it if it cannot be used.

See :mod:`pipeline.text.themes` for the format and the matching. Kept apart from the
matcher so that the analysis child, which gets the validated themes from its worker,
imports no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pipeline.text.normalize import tokens
from pipeline.text.themes import DEFAULT_TAXONOMY

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
