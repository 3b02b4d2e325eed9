"""Where an answer lands, and who the ticket's technician is, across platforms."""

from __future__ import annotations

from handlers import notify
from handlers.directory import Person
from handlers.types import Actor, Conversation, Interaction, Platform
from storage.models import Ticket

CHANNEL = "19:help@thread.tacv2"


def _ticket(platform: str, channel: str, technician: str) -> Ticket:
    return Ticket(source_platform=platform, source_channel=channel, technician_id=technician)


def _turn(
    platform: Platform, user: str, conversation: str, *, can_reply: bool = True
) -> Interaction:
    return Interaction(
        actor=Actor(platform, user),
        conversation=Conversation(platform, conversation),
        can_reply=can_reply,
    )


def test_an_answer_in_the_tickets_own_conversation_or_its_reply_chain_lands_there() -> None:
    ticket = _ticket("teams", CHANNEL, "29:1tom")
    assert notify.answered_in_ticket_place(_turn("teams", "29:1tia", CHANNEL), ticket)
    chain = f"{CHANNEL};messageid=1700000000001"
    assert notify.answered_in_ticket_place(_turn("teams", "29:1tia", chain), ticket)


def test_a_modal_another_chat_or_another_platform_does_not() -> None:
    teams = _ticket("teams", CHANNEL, "29:1tom")
    assert not notify.answered_in_ticket_place(_turn("teams", "29:1tia", "a:1tia-chat"), teams)
    assert not notify.answered_in_ticket_place(_turn("slack", "UTIA", CHANNEL), teams)
    slack = _ticket("slack", "C0HELP", "UTOM")
    assert not notify.answered_in_ticket_place(
        _turn("slack", "UTOM", "C0HELP", can_reply=False), slack
    )


def test_the_tickets_technician_is_known_on_their_other_platform_too() -> None:
    slack = _ticket("slack", "C0HELP", "UTOM")
    tom = Person(email="tom@example.com", slack_id="UTOM", teams_id="29:1tom")
    tia = Person(email="tia@example.com", slack_id="UTIA", teams_id="29:1tia")
    assert notify.is_ticket_technician(Actor("slack", "UTOM"), None, slack)
    assert notify.is_ticket_technician(Actor("teams", "29:1tom"), tom, slack)
    assert not notify.is_ticket_technician(Actor("teams", "29:1tia"), tia, slack)
    assert not notify.is_ticket_technician(Actor("teams", "29:1tom"), None, slack)
