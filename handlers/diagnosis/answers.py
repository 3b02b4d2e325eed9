"""`similar HD-7` and `kb <words>`: what the database knows at once, the KB's articles when
it answers within KB_INLINE_WAIT, else in a follow-up to the same person (at most 10 s)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cards.model import Element, Inline, Rich, Typed
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.diagnosis import cards, rules
from handlers.diagnosis.kb import KbArticle
from handlers.diagnosis.service import ask_kb, kb_query, ticket_signatures
from handlers.types import Interaction, InvalidInput, NotFound, Reply
from storage import error_signatures, search
from storage import tickets as repo

KB_IN_ANSWERS = 5
LISTED = 10
PER_SIGNATURE = 50
# How long `similar` / `kb` wait for the KB before answering with what they have; the KB's
# articles then follow in a second message (Slack and Teams want an answer within 3 s).
KB_INLINE_WAIT = 1.5


def _start_kb(deps: Deps, query: str) -> asyncio.Task[tuple[list[KbArticle], str, str]] | None:
    if deps.kb is None or not query.strip():
        return None
    return asyncio.get_running_loop().create_task(ask_kb(deps, query, limit=KB_IN_ANSWERS))


async def _answer_with_kb(
    deps: Deps,
    kb_task: asyncio.Task[tuple[list[KbArticle], str, str]] | None,
    build: Callable[[list[Element], list[str]], Reply],
    *,
    late_title: Inline,
) -> Reply:
    """`build(kb elements, notes)` now if the KB answers within KB_INLINE_WAIT; else the answer
    without it, and the KB's articles (or that it did not answer) as a follow-up."""
    if kb_task is None:
        return build([], [])
    assert deps.kb is not None
    name = deps.kb.name
    done, _ = await asyncio.wait({kb_task}, timeout=KB_INLINE_WAIT)
    if kb_task in done:
        return build(*_kb_part(name, *kb_task.result()))
    reply = build([], [f"Still asking {name}: its articles follow in a moment (only to you)."])

    async def later() -> Reply:
        articles, state, trouble = await kb_task
        elements, notes = _kb_part(name, articles, state, trouble)
        card = cards.results_card(
            late_title,
            [],
            empty=f"No {name} article matches." if state == "ok" else "",
            kb=elements,
            notes=notes,
        )
        return Reply(card=card, private=True)

    reply.follow_up = later
    return reply


def _kb_part(
    name: str, articles: list[KbArticle], state: str, trouble: str
) -> tuple[list[Element], list[str]]:
    if state != "ok":
        return [], [trouble]
    if not articles:
        return [], [f"No {name} article matches."]
    return cards.kb_elements(name, articles), []


def _why(found: error_signatures.Brief) -> str:
    codes = [k for k in found.matched if k.split(":", 1)[0] in rules.CODE_KINDS]
    if codes:
        return "same error: " + ", ".join(rules.describe(k) for k in codes)
    if any(k.startswith("exact:") for k in found.matched):
        return "same error text"
    return "similar error text"


async def similar_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`similar HD-7`: resolved tickets with HD-7's error, look-alikes, full-text matches of
    its symptom, and KB articles; only to the caller, a technician (the tickets found are
    every client's, with their resolutions: not for a requester of one of them)."""
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput("Which ticket? Try `ticket similar HD-7`.")
    await deps.require_technician(interaction.actor, "look for similar tickets")
    async with deps.sessions() as session:
        ticket = await repo.get_by_number(session, number)
        if ticket is None:
            raise NotFound(f"There is no ticket {number}.")
        kb_task = _start_kb(deps, kb_query(ticket))
        found = ticket_signatures(ticket.error_text, summary=ticket.summary)
        same_keys = set(rules.same_error_keys(found))
        keys = [s.key for s in found if s.same_error or s.kind == "text"]
        earlier, per_key = await error_signatures.brief_with_signatures(
            session, keys, before=2**62, per=LISTED + 2
        )
        if any(n >= LISTED + 2 for n in per_key.values()):
            # The newest with the error may all be open (an outage): the fixes lie further back.
            older = await error_signatures.resolved_with_signatures(
                session, keys, before=2**62, per=LISTED + 2
            )
            earlier = error_signatures.merged(earlier, older)
        resolved = [t for t in earlier if t.status == "closed" and t.id != ticket.id]
        same_found = [t for t in resolved if same_keys & set(t.matched)][:LISTED]
        alike_found = [t for t in resolved if not same_keys & set(t.matched)][:LISTED]
        seen = {t.id for t in same_found + alike_found} | {ticket.id}
        words = rules.terms(ticket.summary, ticket.error_text, ticket.doing)
        matches = await search.ranked_with_any(
            session, words, limit=LISTED + len(seen), exclude=ticket.id
        )
        text_found = [t for t in matches if t.id not in seen][:LISTED]
    sections = [
        ("Same error", [cards.found_fact(t, why=_why(t)) for t in same_found]),
        ("Similar error text", [cards.found_fact(t) for t in alike_found]),
        ("Related resolved tickets", [cards.found_fact(t) for t in text_found]),
    ]
    title = Rich(f"Similar to {ticket.number}: ", Typed(ticket.summary[:80]))

    def build(kb: list[Element], notes: list[str]) -> Reply:
        card = cards.results_card(
            title, sections, empty="No resolved ticket looks like this one yet.", kb=kb, notes=notes
        )
        return Reply(card=card, private=True)

    return await _answer_with_kb(
        deps, kb_task, build, late_title=f"KB articles for {ticket.number}"
    )


MAX_KB_WORDS = 300


async def kb_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`kb <words>`: KB articles, and resolved tickets whose summary, error text or resolution
    note contains the words or the error code; only to the caller, a technician (every
    client's tickets and the KB's internal documentation are searched)."""
    await deps.require_technician(interaction.actor, "search resolved tickets and the KB")
    typed = command.args.strip()
    if not typed:
        raise InvalidInput(
            "What should I look for? Try `ticket kb 0x80070005` or `ticket kb outlook password`."
        )
    if len(typed) > MAX_KB_WORDS:
        raise InvalidInput(f"Keep the search under {MAX_KB_WORDS} characters.")
    kb_task = _start_kb(deps, typed)
    code_keys = [s.key for s in rules.codes(typed)]
    words = _words(typed)
    async with deps.sessions() as session:
        by_code: list[search.Found] = []
        if code_keys:
            found, _ = await error_signatures.with_signatures(
                session, code_keys, before=2**62, per=PER_SIGNATURE
            )
            by_code = [t for t in found if t.status == "closed"][:LISTED]
        seen = {t.id for t in by_code}
        matches = await search.newest_with_all(
            session, words, fields="stated", limit=LISTED + len(seen), typed=typed
        )
        by_text = [t for t in matches if t.id not in seen][
            : LISTED - min(len(by_code), LISTED // 2)
        ]
    sections = [
        ("Resolved tickets with this error code", [cards.found_fact(t) for t in by_code]),
        ("Resolved tickets", [cards.found_fact(t) for t in by_text]),
    ]
    title = Rich("KB search: ", Typed(typed[:80]))

    def build(kb: list[Element], notes: list[str]) -> Reply:
        card = cards.results_card(
            title, sections, empty="No resolved ticket matches.", kb=kb, notes=notes
        )
        return Reply(card=card, private=True)

    return await _answer_with_kb(
        deps, kb_task, build, late_title=Rich("KB articles: ", Typed(typed[:80]))
    )


def hex_spellings(value: str) -> tuple[str, ...]:
    """How people write the hex code `value` (a signature's `0x0000007b`): with or without
    leading zeros, an 8-digit one also without `0x` (`80070005`, Teams' `caa70004`), one of
    0x80000000 and above also as the negative HRESULT in decimal (`-2147024891`)."""
    number = int(value[2:], 16)
    found = [value, f"0x{number:x}", f"0x{number:08x}"]
    if 0x10000000 <= number <= 0xFFFFFFFF:
        found.append(f"{number:08x}")
    if 0x80000000 <= number <= 0xFFFFFFFF:
        found.append(f"-{2**32 - number}")
    return tuple(dict.fromkeys(found))


def _words(typed: str) -> list[search.Word]:
    """The words `kb` looks for in resolved tickets; an error code in any of its spellings
    (`kb 0x80070005` finds a resolution note that says `-2147024891`, `kb 0x7b` one that says
    `0x0000007B`): a note holds a code as its writer typed it, and the signatures, which match
    every spelling, cover only error texts and summaries."""
    words: list[str] = []
    for word in rules.terms(typed, limit=16, numbers=True):
        if word not in words:
            words.append(word)
    codes = {found.value for found in rules.codes(typed) if found.kind == "hex"}
    spelled = {w: hex_spellings(w) for w in words if w in codes}
    # The code's other spellings as typed are not words of their own (`kb 0x7b` searches
    # 0x0000007b or 0x7b, not both).
    taken = {s.lstrip("-") for value, found in spelled.items() for s in found if s != value}
    return [spelled.get(w, w) for w in words if w in spelled or w not in taken]
