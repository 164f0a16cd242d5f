"""YAML configuration files validated by pydantic, with errors that name the line.

Alert rules, follow-up rules and webhook mappings are YAML files a person edits: a
mistake must be reported as ``file: line N: field.path: what is wrong``, at start.
:func:`parse` reads a file's text into its node tree (for line numbers) and its data;
:func:`error_lines` turns a pydantic :class:`~pydantic.ValidationError` into those lines.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from pipeline.settings import ConfigError


def parse(path: Path, text: str) -> tuple[yaml.Node | None, object]:
    """(node tree, data) of a YAML text; :class:`ConfigError` naming ``path`` if invalid."""
    try:
        return yaml.compose(text), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location (best match)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                continue  # a union tag such as 'nps_drop', or a missing key
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            continue
        line = node.start_mark.line + 1
    return line


def key_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the mapping *key* at ``loc`` (a bad key rather than its value)."""
    node, line = root, None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            return None
        match = next(((k, v) for k, v in node.value if k.value == part), None)
        if match is None:
            return None
        key, node = match
        line = key.start_mark.line + 1
    return line


def error_lines(exc: ValidationError, root: yaml.Node | None) -> list[str]:
    """``  - line N: field.path: message`` per error, in line order. An error about a
    mapping key (pydantic's ``[key]`` location) names the key's line."""
    found = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")
        line = key_line(root, loc) if "[key]" in err["loc"] else line_of(root, loc)
        where = f"line {line}: " if line else ""
        message = err["msg"].removeprefix("Value error, ")
        found.append(
            (line or 0, f"  - {where}{'.'.join(str(p) for p in loc) or '(file)'}: {message}")
        )
    return [text for _, text in sorted(found, key=lambda item: item[0])]
