"""Is this text a real answer? The rules every form that asks a technician for facts shares.

An answer is not real when it is empty, when it is only a placeholder or a plea ("please
assist", "help", "n/a", "-", "tbd", "see ticket", "asap", in any case, with any punctuation), or
when it has fewer words than the question needs. The escalation facts and the closure note both
judge text through here; each form says in its own words what it wanted instead.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from enum import Enum

MIN_WORDS = 3

# Words that ask for help, defer to somewhere else, or hold a place: a text made of nothing
# else gives the reader no fact. ("n/a" is one word to the tokenizer; "N.A." is "n" "a".)
PLACEHOLDER_WORDS = frozenset(
    """
    please pls plz kindly assist assistance help helps asap urgent urgently tbd tba tbc todo
    n/a na n a see ticket the above below same as in details thanks thank you thx ty me us
    need needed unknown idk
    """.split()
)

# A word starts with a letter of any script (Cyrillic, Greek, CJK…: the user's exact error text
# is often not English) and goes on with letters, digits, `/`, `'` and `-`; or it is a number.
_WORD = re.compile(r"[^\W\d_](?:[^\W_]|[/'-])*|\d+")


# Chinese and Japanese are written without spaces between words. In a word `_WORD` found, the
# pieces: a run of Katakana (a loanword, `エラー`, one word), a run of Han and Hiragana (one
# word per UNSPACED_WORD characters: a Chinese word is most often two characters long), and
# anything else (`VPN`, `809`). After NFKC: half-width Katakana is folded to full-width.
_PIECES = re.compile(
    "([\u30a0-\u30ff\u31f0-\u31ff]+)"
    "|([\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]+)"
    "|([^\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\U00020000-\U0003134f]+)"
)
UNSPACED_WORD = 2


class Problem(Enum):
    """Why a text is not an answer."""

    EMPTY = "empty"
    PLACEHOLDER = "placeholder"
    TOO_SHORT = "too short"


def _folded(text: str) -> str:
    """`text` as it reads: compatibility forms folded (the full-width forms an East Asian
    input method types, mathematical letters pasted from styled text) and invisible format
    characters (zero-width space, joiners) dropped, so a look-alike of a plea is that plea."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if unicodedata.category(c) != "Cf")


def words(text: str) -> list[str]:
    """Lower-case words with hyphens dropped (`re-installed` -> `reinstalled`)."""
    return [w.replace("-", "").strip("'") for w in _WORD.findall(_folded(text).lower())]


def word_count(text: str) -> int:
    """How many words `text` has: as `words` finds them, but Chinese and Japanese (written
    without spaces) counted in their own words (see `_PIECES`), so a sentence of them is not
    "one word"."""
    count = 0
    for word in words(text):
        for katakana, unspaced, other in _PIECES.findall(word):
            if unspaced:
                count += -(-len(unspaced) // UNSPACED_WORD)
            elif katakana or other.strip("/'"):
                count += 1
    return count


def made_only_of(text: str, vocabulary: Iterable[str]) -> bool:
    """True when every word of `text` is in `vocabulary` (also when it has no word at all)."""
    known = vocabulary if isinstance(vocabulary, frozenset | set) else frozenset(vocabulary)
    return all(w in known for w in words(text))


def is_placeholder(text: str) -> bool:
    """True for text with something in it that is only a plea or a placeholder ("-", "TBD!")."""
    return bool(text.strip()) and made_only_of(text, PLACEHOLDER_WORDS)


def problem(text: str, *, min_words: int = 1) -> Problem | None:
    """What is wrong with `text` as an answer (None: it is one); checks run in this order."""
    if not text.strip():
        return Problem.EMPTY
    if is_placeholder(text):
        return Problem.PLACEHOLDER
    found = words(text)
    if min_words > 1 and found and not any(w[0].isalpha() for w in found):
        # Only numbers where words are asked: a list's markers with nothing written after
        # them ("1. 2. 3.", a template left unfilled). One number alone answers elsewhere.
        return Problem.PLACEHOLDER
    if word_count(text) < min_words:
        return Problem.TOO_SHORT
    return None


def shown(text: str, limit: int = 40) -> str:
    """The typed text quoted back in a refusal, cut short."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
