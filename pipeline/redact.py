"""PII redaction of free-text comments (English and Italian): typed placeholders, no originals.

:class:`Redactor` replaces e-mail addresses, IBANs, payment card numbers, phone numbers and
configurable patterns with typed placeholders (``[EMAIL]``, ``[IBAN]``, ``[CARD]``,
``[PHONE]``, ``[CUSTOMER_ID]``...), so that a comment can leave the pipeline (scored topic,
alerts, HTTP API) without the personal data in it. It never logs and never returns what it
replaced: :meth:`Redactor.redact_with_counts` gives only how many of each kind.

Order of the passes, and why:

1. ``email`` -- first, because an address may contain digits (``mario.rossi1985@...``)
   that the number passes would otherwise take apart.
2. ``iban`` -- letters and digits; checked with the ISO 13616 mod-97 check (any country
   code, compact or printed in groups of four, any case). Before the card and phone
   passes so that its digit groups are not half-eaten as phone or card numbers.
3. ``card`` -- 13 to 19 digits that pass the Luhn check, solid or in groups of three or
   more digits (the last may be shorter) joined by spaces or dashes. Before phones: a
   16-digit card in groups of four must not be read as phone numbers.
4. extra patterns, in the order given -- deployment-specific identifiers (``CUST-\\d{6}``)
   are more specific than the phone heuristic, so they win over it.
5. ``phone`` -- last, as the most heuristic kind: international ``+39``/``+44``/``+1``/``00``
   forms, Italian mobiles (``3xx``) and landlines (``0x``), North American numbers. Dates,
   amounts (thousands groups, a currency sign before, decimals after) and anything under
   8 digits are left alone.

Cost: every pattern is compiled once. A comment without ``@`` skips the e-mail pass, one
without an ASCII digit skips the IBAN, card and phone passes, one with fewer than 8 (the
fewest a phone number has; a card has 13) skips the card and phone passes, so the typical
comment costs two C-level scans (plus one per extra pattern, which can match anything),
and one with a few digits ("2 days", "agent-071") four. Number runs are
examined in linear time: a hostile 10,000-character comment (the contract's limit) of
digit groups takes some tens of milliseconds.

Redacting twice gives the same text as redacting once (the passes repeat until one finds
nothing, see :meth:`Redactor.redact_with_counts`), and placeholders contain no digits
(extra pattern names are letters and underscores only). A placeholder is never matched
again, not even by an extra pattern.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import NamedTuple

EMAIL = "email"
IBAN = "iban"
CARD = "card"
PHONE = "phone"
BUILTIN_KINDS = (EMAIL, IBAN, CARD, PHONE)

_NO_EXTRAS: Mapping[str, str] = MappingProxyType({})


def placeholder(kind: str) -> str:
    """The text that replaces one occurrence of ``kind``: ``[EMAIL]``, ``[CUSTOMER_ID]``."""
    return f"[{kind.upper()}]"


#: Any placeholder, built-in or extra (and whatever looks like one in the original text).
_PLACEHOLDER = re.compile(r"\[[A-Z_]+\]")
_EXTRA_NAME = re.compile(r"[A-Za-z][A-Za-z_]*")
_DIGIT = re.compile(r"[0-9]")

# E-mail: RFC 5322 dot-atom local part, then a domain of at least two labels. The match
# only starts at the beginning of a token and every quantifier is possessive or bounded by
# a dot, so the scan stays linear on long tokens.
_LOCAL = r"[\w!#$%&'*+/=?^`{|}~-]"
_EMAIL = re.compile(
    r"(?<![\w!#$%&'*+/=?^`{|}~.-])"
    + _LOCAL
    + r"++(?:\."
    + _LOCAL
    + r"++)*+@[^\W_][\w-]*+(?:\.[^\W_][\w-]*+)+"
)

# IBAN candidate: country code, check digits, then the BBAN either compact or in groups of
# four with a shorter last group. The greedy group run may swallow a following four-letter
# word ("... 7034 ciao"): the check then retries shorter prefixes at group boundaries.
_IBAN = re.compile(
    r"(?<!\w)[A-Za-z]{2}[0-9]{2}"
    r"(?:(?: [A-Za-z0-9]{4}){1,7}(?: [A-Za-z0-9]{1,3})?|[A-Za-z0-9]{11,30})(?!\w)"
)
_IBAN_MIN, _IBAN_MAX = 15, 34  # the shortest in use (Norway), the longest ISO 13616 allows

# A run of digit groups, the raw material of the card and phone passes: an optional "+",
# then groups of ASCII digits (or a parenthesised area code) separated by one space, or a
# dot, dash or slash with optional spaces around it. A group glued to letters ("10am",
# "4567abc") ends the run before it.
_GROUP = r"(?:\([0-9]{1,4}\)|[0-9]++(?!\w))"
_NUMBER_RUN = re.compile(
    r"(?<![\w+])(?:\+ ?)?" + _GROUP + r"(?:(?: ?[./-] ?| |(?<=\)))" + _GROUP + r")*"
)
_GROUP_PARTS = re.compile(r"\(([0-9]+)\)|([0-9]+)")
_CURRENCY_BEFORE = re.compile(r"(?:[€$£]|\b(?:EUR|USD|GBP))\s?\Z", re.IGNORECASE)
_DECIMAL_AFTER = re.compile(r"[.,][0-9]")

_CARD_MIN, _CARD_MAX = 13, 19
_PHONE_MIN = 8  # shorter numbers (order numbers, scores, years) are never phones
_PHONE_MAX = 17  # E.164's 15 digits plus an international "00" prefix
_CARD_LINKS = (" ", "-")
_DATE_LINKS = ("-", "/", ".")


def luhn_is_valid(digits: str) -> bool:
    """Luhn (mod 10) check of a string of ASCII digits, as used by payment card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_is_valid(compact: str) -> bool:
    """ISO 13616 check of an IBAN without spaces (any case): mod 97 of the rearranged number is 1.

    Only the check digits are verified, not the per-country length and BBAN format: any
    country code is accepted.
    """
    if not _IBAN_MIN <= len(compact) <= _IBAN_MAX or not compact.isascii():
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit() and compact.isalnum()):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


class _Group(NamedTuple):
    """One digit group of a number run (positions relative to the run)."""

    start: int
    end: int
    digits: str
    paren: bool
    link: str  # the separator before the group; "" for the first


class _Run(NamedTuple):
    groups: list[_Group]
    plus: bool  # the run starts with "+": its first group is a country code


def _parse_run(run: str) -> _Run:
    groups: list[_Group] = []
    previous_end = 0
    for match in _GROUP_PARTS.finditer(run):
        paren = match.group(1) is not None
        digits = match.group(1) if paren else match.group(2)
        link = run[previous_end : match.start()] if groups else ""
        groups.append(_Group(match.start(), match.end(), digits, paren, link))
        previous_end = match.end()
    return _Run(groups, run.startswith("+"))


Counts = dict[str, int]


def _bump(counts: Counts, kind: str, n: int = 1) -> None:
    counts[kind] = counts.get(kind, 0) + n


def _rewrite(
    pattern: re.Pattern[str], text: str, replace: Callable[[re.Match[str]], str | None]
) -> str:
    """Like ``pattern.sub``, but ``replace`` may return None to keep a match as it is."""
    pieces: list[str] = []
    last = 0
    for match in pattern.finditer(text):
        replacement = replace(match)
        if replacement is None:
            continue
        pieces.append(text[last : match.start()])
        pieces.append(replacement)
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


# --- e-mail and IBAN -------------------------------------------------------------------


def _redact_emails(text: str, counts: Counts) -> str:
    text, found = _EMAIL.subn(placeholder(EMAIL), text)
    if found:
        _bump(counts, EMAIL, found)
    return text


def _redact_ibans(text: str, counts: Counts) -> str:
    def replace(match: re.Match[str]) -> str | None:
        candidate = match.group()
        # longest first: the whole candidate, then prefixes ending before each space
        ends = [len(candidate)]
        ends += [i for i in range(len(candidate) - 1, 3, -1) if candidate[i] == " "]
        for end in ends:
            if iban_is_valid(candidate[:end].replace(" ", "")):
                _bump(counts, IBAN)
                return placeholder(IBAN) + candidate[end:]
        return None

    return _rewrite(_IBAN, text, replace)


# --- cards and phones: digit runs --------------------------------------------------------


def _scan(
    groups: list[_Group],
    usable: Callable[[int], bool],
    joinable: Callable[[int], bool],
    valid: Callable[[int, int, str], bool],
    min_digits: int,
    max_digits: int,
) -> list[tuple[int, int]]:
    """Left to right, the longest valid group span [i, j) at each start; spans do not overlap.

    ``usable(k)``: group k may be part of a span; ``joinable(k)``: group k may follow
    group k - 1 in a span; ``valid(i, j, digits)`` gets the span's digits. Spans are
    bounded by ``max_digits`` and every check is cheap, so a run costs linear time.
    """
    spans: list[tuple[int, int]] = []
    i, n = 0, len(groups)
    while i < n:
        best = 0
        digits = ""
        for j in range(i, n):
            if not usable(j) or (j > i and not joinable(j)):
                break
            digits += groups[j].digits
            if len(digits) > max_digits:
                break
            if len(digits) >= min_digits and valid(i, j + 1, digits):
                best = j + 1
        if best:
            spans.append((i, best))
            i = best
        else:
            i += 1
    return spans


def _splice(run_text: str, run: _Run, spans: list[tuple[int, int]], kind: str) -> str:
    pieces: list[str] = []
    last = 0
    for i, j in spans:
        start = 0 if (i == 0 and run.plus) else run.groups[i].start
        pieces.append(run_text[last:start])
        pieces.append(placeholder(kind))
        last = run.groups[j - 1].end
    pieces.append(run_text[last:])
    return "".join(pieces)


def _redact_cards(text: str, counts: Counts) -> str:
    def replace(match: re.Match[str]) -> str | None:
        run_text = match.group()
        if len(run_text) < _CARD_MIN:
            return None
        run = _parse_run(run_text)
        groups = run.groups

        # 4111 1111 1111 1111, 3782 822463 10005, 4222 2222 2222 2: groups of three or more
        # digits, except the last
        spans = _scan(
            groups,
            usable=lambda k: not groups[k].paren and not (k == 0 and run.plus),
            joinable=lambda k: groups[k].link in _CARD_LINKS and len(groups[k - 1].digits) >= 3,
            valid=lambda _i, _j, digits: digits[0] != "0" and luhn_is_valid(digits),
            min_digits=_CARD_MIN,
            max_digits=_CARD_MAX,
        )
        if not spans:
            return None
        _bump(counts, CARD, len(spans))
        return _splice(run_text, run, spans, CARD)

    return _rewrite(_NUMBER_RUN, text, replace)


def _looks_like_date(a: str, b: str, c: str) -> bool:
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:  # 2024-05-01
        return 1 <= int(b) <= 12 and 1 <= int(c) <= 31
    if len(a) <= 2 and len(b) <= 2 and len(c) in (2, 4):  # 01/05/2024, 5/31/24
        day_or_month = sorted((int(a), int(b)))
        return 1 <= day_or_month[0] <= 12 and day_or_month[1] <= 31
    return False


def _not_phone_groups(run: _Run, before: str, after: str) -> set[int]:
    """Groups that belong to a date or an amount, never to a phone number."""
    groups = run.groups
    excluded: set[int] = set()
    for i in range(len(groups) - 2):
        a, b, c = groups[i : i + 3]
        if (
            not (a.paren or b.paren or c.paren)
            and b.link == c.link
            and b.link in _DATE_LINKS
            and _looks_like_date(a.digits, b.digits, c.digits)
        ):
            excluded.update((i, i + 1, i + 2))
    # chains of groups joined by dots: 12.345.678 is an amount; so is the first chain after
    # a currency sign, and the last one before a decimal part (",50")
    chains: list[list[int]] = []
    for k, group in enumerate(groups):
        if k and group.link == "." and not group.paren and not groups[k - 1].paren:
            chains[-1].append(k)
        else:
            chains.append([k])
    for index, chain in enumerate(chains):
        thousands = (
            len(chain) >= 3
            and len(groups[chain[0]].digits) <= 3
            and all(len(groups[k].digits) == 3 for k in chain[1:])
        )
        priced = index == 0 and _CURRENCY_BEFORE.search(before) is not None
        decimal = index == len(chains) - 1 and _DECIMAL_AFTER.match(after) is not None
        if thousands or priced or decimal:
            excluded.update(chain)
    return excluded


def _phone_joinable(run: _Run, k: int) -> bool:
    """Only the first group of a phone number may have one digit (+1, 1 800 ...), or "(0)"."""
    group = run.groups[k]
    return len(group.digits) >= 2 or (run.plus and group.paren and group.digits == "0")


def _is_phone(run: _Run, i: int, digits: str) -> bool:
    """Whether the digits of a group span starting at group i have the shape of a phone number.

    Group sizes are checked by :func:`_phone_joinable`, except for the first group.
    """
    international = run.plus and i == 0
    if international:
        # "+44 (0)20 ...": the national trunk prefix is not dialled from abroad
        trunk = sum(1 for g in run.groups[1:] if g.paren and g.digits == "0")
        return _PHONE_MIN <= len(digits) - trunk <= 15
    if len(run.groups[i].digits) == 1 and digits[0] != "1":
        return False  # only a country code or a North American trunk "1" stands alone
    first = digits[0]
    if digits.startswith("00"):  # 0039 347 ...: international with the "00" prefix
        return digits[2] != "0" and 10 <= len(digits) <= 17
    if first == "0":  # Italian landline 02 1234 5678, UK national 020 7946 0958
        return len(digits) <= 11
    if first == "3":  # Italian mobile 347 123 4567 (and older 9-digit ones)
        return len(digits) <= 10
    if first == "1":  # 1 800 555 0199: North American with the trunk prefix
        return len(digits) == 11 and digits[1] not in "01"
    return len(digits) == 10  # North American (555) 123-4567


def _redact_phones(text: str, counts: Counts) -> str:
    def replace(match: re.Match[str]) -> str | None:
        run_text = match.group()
        if len(run_text) < _PHONE_MIN:
            return None
        run = _parse_run(run_text)
        start, end = match.span()
        excluded = _not_phone_groups(run, text[max(0, start - 5) : start], text[end : end + 2])
        spans = _scan(
            run.groups,
            usable=lambda k: k not in excluded,
            joinable=lambda k: _phone_joinable(run, k),
            valid=lambda i, _j, digits: _is_phone(run, i, digits),
            min_digits=_PHONE_MIN,
            max_digits=_PHONE_MAX,
        )
        if not spans:
            return None
        _bump(counts, PHONE, len(spans))
        return _splice(run_text, run, spans, PHONE)

    return _rewrite(_NUMBER_RUN, text, replace)


# --- extra patterns ------------------------------------------------------------------------


class _Extra(NamedTuple):
    kind: str
    placeholder: str
    pattern: re.Pattern[str]


def _compile_extra(name: str, regex: str) -> _Extra:
    if not isinstance(name, str) or not _EXTRA_NAME.fullmatch(name):
        raise ValueError(
            f"extra redaction pattern {name!r}: the name must be letters and underscores "
            "(it becomes the placeholder, which never contains digits)"
        )
    kind = name.lower()
    if kind in BUILTIN_KINDS:
        raise ValueError(f"extra redaction pattern {name!r}: {kind!r} is a built-in kind")
    try:
        pattern = re.compile(regex)
    except (re.error, TypeError) as exc:
        raise ValueError(
            f"extra redaction pattern {name!r}: invalid regex {regex!r}: {exc}"
        ) from exc
    if pattern.fullmatch("") is not None:
        raise ValueError(f"extra redaction pattern {name!r}: {regex!r} matches empty text")
    return _Extra(kind, placeholder(kind), pattern)


def _redact_extra(extra: _Extra, text: str, counts: Counts) -> str:
    """Replace the matches of an extra pattern, except empty ones and any touching a placeholder."""
    protected = [m.span() for m in _PLACEHOLDER.finditer(text)] if "[" in text else []
    starts = [s for s, _ in protected]
    found = 0

    def replace(match: re.Match[str]) -> str | None:
        nonlocal found
        start, end = match.span()
        if start == end:
            return None
        k = bisect.bisect_left(starts, end) - 1  # the last placeholder starting before `end`
        if k >= 0 and protected[k][1] > start:
            return None
        found += 1
        return extra.placeholder

    text = _rewrite(extra.pattern, text, replace)
    if found:
        _bump(counts, extra.kind, found)
    return text


# --- the redactor ----------------------------------------------------------------------------


class Redactor:
    """Replaces PII in free text with typed placeholders; see the module doc for the kinds.

    ``extra_patterns`` maps a name (letters and underscores) to a regular expression; its
    matches become ``[NAME]`` (upper-cased) and are counted under the lower-cased name. An
    invalid regex, a bad name or a regex that matches empty text raises :class:`ValueError`
    naming the pattern, so that settings validation fails at start with a clear message.
    """

    def __init__(self, extra_patterns: Mapping[str, str] = _NO_EXTRAS) -> None:
        extras = [_compile_extra(name, regex) for name, regex in extra_patterns.items()]
        kinds = [extra.kind for extra in extras]
        duplicates = sorted({kind for kind in kinds if kinds.count(kind) > 1})
        if duplicates:
            raise ValueError(f"extra redaction patterns: names differ only in case: {duplicates}")
        self._extras = tuple(extras)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind this redactor may count, in the order of its passes."""
        return (EMAIL, IBAN, CARD, *(extra.kind for extra in self._extras), PHONE)

    def redact(self, text: str) -> str:
        """``text`` with every PII occurrence replaced by its placeholder."""
        return self.redact_with_counts(text)[0]

    def redact_with_counts(self, text: str) -> tuple[str, dict[str, int]]:
        """The redacted text and how many of each kind were replaced (kinds found only).

        Passes repeat until one finds nothing: a replacement changes the context of its
        neighbours (``4111 1111 1111 1111CUST-123456`` only shows its card once the customer
        id became a placeholder), and repeating is what makes redaction idempotent. A pass
        that finds something turns at least one character outside placeholders into a
        placeholder, so there are at most ``len(text)`` of them; a comment with PII
        typically takes two.
        """
        if not self._extras and "@" not in text and _DIGIT.search(text) is None:
            return text, {}  # what _redact_once does with it, without the calls
        total: Counts = {}
        for _ in range(len(text) + 1):
            text, counts = self._redact_once(text)
            if not counts:
                break
            for kind, n in counts.items():
                _bump(total, kind, n)
        return text, total

    def _redact_once(self, text: str) -> tuple[str, Counts]:
        counts: Counts = {}
        if "@" in text:
            text = _redact_emails(text, counts)
        numbers = False  # whether a card or a phone number may be in the text
        if _DIGIT.search(text) is not None:
            text = _redact_ibans(text, counts)
            # a card has 13 digits or more, a phone 8 or more: with fewer ASCII digits
            # (most comments with digits: "2 days", "agent-071") neither pass can find
            # one, and the extra patterns only take digits away
            numbers = len(_DIGIT.findall(text)) >= _PHONE_MIN
        if numbers:
            text = _redact_cards(text, counts)
        for extra in self._extras:
            text = _redact_extra(extra, text, counts)
        if numbers:
            text = _redact_phones(text, counts)
        return text, counts
