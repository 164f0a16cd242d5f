"""VADER's ``compound`` score, computed the way vaderSentiment 3.3 computes it, faster.

:meth:`FastVader.compound` equals ``SentimentIntensityAnalyzer.polarity_scores(text)
["compound"]`` (a test compares them on thousands of texts built to hit every rule) but
costs about a third: it skips what the compound score does not need and what vaderSentiment
repeats per word. Profiled on the simulator's English comments (py-spy), the original
spends most of its time in

* the emoji pass, which rebuilds the text one character at a time (``+=``) even when it
  is plain ASCII (no emoji can be in it: every key of VADER's emoji lexicon is non-ASCII);
* ``_negation_check`` and ``_special_idioms_check``, which lower-case the whole comment
  again on every call (up to three calls per sentiment word), and ``negated``, which
  copies VADER's negation list on every call;
* the ``pos`` / ``neu`` / ``neg`` proportions, which the pipeline does not use.

Here the words are lower-cased once, negation is a set lookup, a comment without any
lexicon word returns 0.0 at once (VADER gives exactly 0 then: boosters, negations and
punctuation only scale the valence of lexicon words), and only ``compound`` is computed.
The rules, constants and lexicons are vaderSentiment's own (imported, not copied), and
so is the contrastive ``but`` rule (called as is, only when a comment has "but").

Then, for the analysis child's CPU (issue 11; ~20% less per English simulator comment,
timeit, before and after alternating: 6.7 -> 5.3 µs on a busy machine): only the
lexicon words are visited (found with C-level lookups; every other word's sentiment is
0), a sentiment word with no rule word within reach (:data:`_RULE_WORDS`) keeps its
lexicon valence without running the rules, and a token's stripped and lower-case forms
are remembered per token (:data:`TOKEN_CACHE` tokens, ~2 MiB at most). Still equal to
vaderSentiment's score (tests/test_vader_fast.py) and to the code before
(tests/test_text_equivalence.py).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from itertools import compress

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
    scalar_inc_dec,
)

_NEGATE = frozenset(NEGATE)
_PUNCTUATION = string.punctuation
#: Every word of an idiom or multi-word booster: where none is near a sentiment word,
#: ``_special_idioms_check`` cannot change its valence (skipped).
_IDIOM_WORDS = frozenset(
    word for key in (*SPECIAL_CASES, *(k for k in BOOSTER_DICT if " " in k)) for word in key.split()
)


#: Words that let the rules change a sentiment word's valence when they are within three
#: words before it (or, for idioms, two after): negations, boosters, "no", "least",
#: "kind" (of), "never so/this", "without doubt", "so"/"this" (x1.25), and one word of
#: each idiom or multi-word booster (its first longest, "to die for" -> "die": an idiom
#: matches only with all its words). A sentiment word with none of them from three words
#: before to two after (and a comment without "n't", which negates any word) keeps its
#: lexicon valence, ALL CAPS aside: the rules are skipped for it.
_RULE_WORDS = frozenset(
    {
        *_NEGATE,
        *(key for key in BOOSTER_DICT if " " not in key),
        *("no", "never", "without", "so", "this", "least", "kind"),
        *(max(key.split(), key=len) for key in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in key),
    }
)
#: Tokens remembered by :meth:`FastVader._split`, then the memory starts over.
TOKEN_CACHE = 10_000


def _negated(word: str) -> bool:
    """vaderSentiment's ``negated([word])`` for one lower-case word."""
    return word in _NEGATE or "n't" in word


def _negation_check(valence: float, lower: Sequence[str], start_i: int, i: int) -> float:
    """``SentimentIntensityAnalyzer._negation_check`` on pre-lowered words."""
    if start_i == 0:
        if _negated(lower[i - 1]):
            valence *= N_SCALAR
    elif start_i == 1:
        if lower[i - 2] == "never" and lower[i - 1] in ("so", "this"):
            valence *= 1.25
        elif lower[i - 2] == "without" and lower[i - 1] == "doubt":
            pass
        elif _negated(lower[i - 2]):
            valence *= N_SCALAR
    else:
        if (lower[i - 3] == "never" and lower[i - 2] in ("so", "this")) or lower[i - 1] in (
            "so",
            "this",
        ):
            valence *= 1.25
        elif lower[i - 3] == "without" and "doubt" in (lower[i - 2], lower[i - 1]):
            pass
        elif _negated(lower[i - 3]):
            valence *= N_SCALAR
    return valence


def _special_idioms_check(valence: float, lower: Sequence[str], i: int) -> float:
    """``SentimentIntensityAnalyzer._special_idioms_check`` on pre-lowered words (i > 2)."""
    onezero = f"{lower[i - 1]} {lower[i]}"
    twoonezero = f"{lower[i - 2]} {lower[i - 1]} {lower[i]}"
    twoone = f"{lower[i - 2]} {lower[i - 1]}"
    threetwoone = f"{lower[i - 3]} {lower[i - 2]} {lower[i - 1]}"
    threetwo = f"{lower[i - 3]} {lower[i - 2]}"
    for seq in (onezero, twoonezero, twoone, threetwoone, threetwo):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    n = len(lower)
    if n - 1 > i:
        zeroone = f"{lower[i]} {lower[i + 1]}"
        if zeroone in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroone]
    if n - 1 > i + 1:
        zeroonetwo = f"{lower[i]} {lower[i + 1]} {lower[i + 2]}"
        if zeroonetwo in SPECIAL_CASES:
            valence = SPECIAL_CASES[zeroonetwo]
    for n_gram in (threetwoone, threetwo, twoone):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


class FastVader(SentimentIntensityAnalyzer):
    """VADER with a fast :meth:`compound` (its lexicon can be extended as usual)."""

    def __init__(self) -> None:
        super().__init__()
        # the ASCII shortcut of the emoji pass holds only if no emoji key is ASCII
        self._ascii_emoji_free = not any(key.isascii() for key in self.emojis)
        #: token -> (word, lower-case word): see _split
        self._tokens: dict[str, tuple[str, str]] = {}

    def _split(self, text: str) -> tuple[Sequence[str], Sequence[str]]:
        """The words of ``text`` (SentiText's tokens, punctuation stripped from a token
        left with more than two characters) and their lower-case forms. A pure function
        of each token, remembered per token: most tokens of a comment were seen before."""
        tokens = text.split()
        cache = self._tokens
        entries = list(map(cache.get, tokens))
        if not all(entries):  # tokens not seen yet (None; an entry is a non-empty tuple)
            if len(cache) >= TOKEN_CACHE:
                cache.clear()
            for k, token in enumerate(tokens):
                if entries[k] is None:
                    stripped = token.strip(_PUNCTUATION)
                    word = stripped if len(stripped) > 2 else token
                    entries[k] = cache[token] = (word, word.lower())
        if not entries:
            return (), ()
        words, lower = zip(*entries, strict=True)  # type: ignore[misc]  # no None left
        return words, lower

    def _without_emoji(self, text: str) -> str:
        if self._ascii_emoji_free and text.isascii():
            return text.strip()
        parts: list[str] = []  # the original loop, with a list instead of str +=
        prev_space = True
        for char in text:
            description = self.emojis.get(char)
            if description is not None:
                if not prev_space:
                    parts.append(" ")
                parts.append(description)
                prev_space = False
            else:
                parts.append(char)
                prev_space = char == " "
        return "".join(parts).strip()

    def compound(self, text: str) -> float:
        """``polarity_scores(text)["compound"]``, rounded to 4 decimals like VADER's."""
        text = self._without_emoji(text)
        words, lower = self._split(text)
        lexicon = self.lexicon
        # where the lexicon words are (the only words with a valence: every other word's
        # sentiment is 0), found without a Python-level loop over the comment's words
        positions = list(compress(range(len(lower)), map(lexicon.__contains__, lower)))
        if not positions:
            return 0.0
        n = len(words)
        allcaps = sum(map(str.isupper, words))
        is_cap_diff = 0 < allcaps < n  # allcap_differential(words)
        idioms = not _IDIOM_WORDS.isdisjoint(lower)
        # a word with "n't" negates (_negated) but is not in _RULE_WORDS
        rules_anywhere = "n't" in " ".join(lower)
        sentiments: list[float] = [0] * n
        for i in positions:
            low = lower[i]
            valence: float = lexicon[low]
            if not rules_anywhere and _RULE_WORDS.isdisjoint(lower[i - 3 if i > 3 else 0 : i + 3]):
                # no rule word around (nor itself): the rules below leave the valence as is
                if is_cap_diff and words[i].isupper():
                    valence = valence + C_INCR if valence > 0 else valence - C_INCR
                sentiments[i] = valence
                continue
            if low in BOOSTER_DICT or (low == "kind" and i < n - 1 and lower[i + 1] == "of"):
                continue
            if low == "no" and i != n - 1 and lower[i + 1] in lexicon:
                valence = 0.0
            if (
                (i > 0 and lower[i - 1] == "no")
                or (i > 1 and lower[i - 2] == "no")
                or (i > 2 and lower[i - 3] == "no" and lower[i - 1] in ("or", "nor"))
            ):
                valence = lexicon[low] * N_SCALAR
            if is_cap_diff and words[i].isupper():
                valence = valence + C_INCR if valence > 0 else valence - C_INCR
            for start_i in range(3):
                before = i - (start_i + 1)
                if i > start_i and lower[before] not in lexicon:
                    if lower[before] in BOOSTER_DICT:  # else scalar_inc_dec gives 0
                        s = scalar_inc_dec(words[before], valence, is_cap_diff)
                        if start_i == 1 and s != 0:
                            s = s * 0.95
                        if start_i == 2 and s != 0:
                            s = s * 0.9
                        valence = valence + s
                    valence = _negation_check(valence, lower, start_i, i)
                    if (
                        start_i == 2
                        and idioms
                        and not _IDIOM_WORDS.isdisjoint(lower[i - 3 : i + 3])
                    ):
                        valence = _special_idioms_check(valence, lower, i)
            if i > 1 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
                if lower[i - 2] != "at" and lower[i - 2] != "very":
                    valence = valence * N_SCALAR
            elif i > 0 and lower[i - 1] not in lexicon and lower[i - 1] == "least":
                valence = valence * N_SCALAR
            sentiments[i] = valence
        if "but" in lower:
            sentiments = self._but_check(words, sentiments)
        total = float(sum(sentiments))
        if total:
            emphasis = self._punctuation_emphasis(text)
            total = total + emphasis if total > 0 else total - emphasis
        return round(normalize(total), 4)
