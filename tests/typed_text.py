"""Property-test support for text people typed: strategies and the CommonMark oracle.

`TYPED` mixes what would be markup on either platform (Slack control sequences, Markdown links,
emphasis, code, list/heading/quote markers, entities, line breaks of every kind, indentation)
with arbitrary text. `commonmark_text` reads Teams Markdown back with a real CommonMark parser
(markdown-it-py), and `FORMATTING` names the nodes typed text must never create.
"""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

PIECES = [
    "<!here>",
    "<!channel>",
    "<@U0EVIL>",
    "<#C0EVIL|general>",
    "<https://evil.example|reset>",
    "[x](https://evil.example)",
    "![i](https://evil.example/i.png)",
    "**b**",
    "_i_",
    "~~s~~",
    "`",
    "```",
    "#",
    "# ",
    "-",
    "- ",
    "+ ",
    "* ",
    "1.",
    "1. ",
    "2)",
    ">",
    "> ",
    "|",
    "===",
    "---",
    "___",
    "&",
    "&amp;",
    "&lt;",
    "&#65;",
    "<b>",
    "\\",
    "*",
    "_",
    "~",
    "[",
    "]",
    "(",
    ")",
    "!",
    ":smile:",
    " ",
    "    ",
    "\t",
    "\n",
    "\n\n",
    "\r",
    "\r\n",
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\u00a0",
    "é",
    "🙂",
    "a",
    "0",
]
# U+0000 is left out: CommonMark shows it as U+FFFD, and an inbound NUL is refused with 400
# (tests/http/test_*_malformed.py), so no typed text holds one.
_ANY = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=6)
TYPED = st.lists(st.one_of(st.sampled_from(PIECES), _ANY), max_size=14).map("".join)

COMMONMARK = MarkdownIt("commonmark")
# What typed text must never become in Teams Markdown.
FORMATTING = {
    "link_open",
    "image",
    "em_open",
    "strong_open",
    "s_open",
    "code_inline",
    "code_block",
    "fence",
    "heading_open",
    "bullet_list_open",
    "ordered_list_open",
    "blockquote_open",
    "hr",
    "html_inline",
    "html_block",
}


def tokens(markdown: str) -> Iterator[Token]:
    """Every block and inline token CommonMark reads in `markdown`, in order."""

    def walk(found: list[Token]) -> Iterator[Token]:
        for token in found:
            yield token
            if token.children:
                yield from walk(token.children)

    return walk(COMMONMARK.parse(markdown))


def formatting(markdown: str) -> list[str]:
    return [t.type for t in tokens(markdown) if t.type in FORMATTING]


def commonmark_text(markdown: str) -> str:
    """The text a reader sees in `markdown`, whitespace-normalised (`shown`)."""
    out: list[str] = []
    for token in tokens(markdown):
        if token.type in ("text", "code_inline", "code_block", "fence", "html_inline"):
            out.append(token.content)
        elif token.type in ("softbreak", "hardbreak", "paragraph_close", "heading_close"):
            out.append("\n")
    return shown("".join(out))


def shown(text: str) -> str:
    """`text` with every run of whitespace one space, none at the ends. CommonMark (and Teams)
    drop a line's leading and trailing blanks, make a line break a soft break (shown as a space
    or a break) and a blank line a new paragraph; the renderer writes indentation as no-break
    spaces. None of that changes what the text says."""
    return " ".join(text.replace("\u00a0", " ").split())
