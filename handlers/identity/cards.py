"""What the identity check says: the manager's DM card and the texts for technicians.

What people typed (summaries, categories), what the directory holds (names, e-mail
addresses, numbers on file) and what outside systems said (delivery errors) is `Typed`, people
are `Mention`s, so none of it can ping, link or format anywhere: in the manager's request, in
the texts for technicians and managers alike. The rest is the bot's own words (cards.model).
A text names people by name and e-mail only (`named`), never as a Slack mention: it goes to
threads others read, and naming someone there must not notify them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cards.model import ActionId, Button, Card, Facts, Inline, Mention, Rich, Text, Typed, plain
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person, unavailable_words
from handlers.formatting import listed, named, requester, technician, when
from storage.models import IdentityCheck, Ticket

# Outbox payload `purpose` of the manager's DM (and of the technician notices).
PURPOSE = "identity"
# Outbox payload key of the technician's DM with the number on file (the check's id).
CALLBACK_DM_KEY = "identity_callback"
# Open checks a technician's call-back can confirm: no manager could be asked, or the request
# to the manager could not be delivered and was given up (`unreachable`).
CALLBACK_STATES = ("no_manager", "unreachable")
# Key of the opaque nonce in the Approve/Deny button value (the only thing the button carries).
NONCE_KEY = "check"
# The manager's deadline on the request: set again as it is sent (the window counts from then).
ANSWER_BY = "Answer by"

UNKNOWN_REQUEST = (
    "This identity confirmation request is not valid (it may have been altered). Nothing "
    "was changed; the attempt has been recorded."
)
NOT_MANAGER = (
    "Only the requester's manager can answer this identity confirmation request. Nothing "
    "was changed; the attempt has been recorded."
)
# The technician's button on the call-back notice (its title; the command is
# `verify HD-7 called-back`).
CALLED_BACK = "Called back: confirmed"
UNDELIVERABLE = (
    "This request could not be delivered and was given up, so your answer was not recorded: "
    "the technician was told to confirm the identity another way. Nothing was changed."
)
SUPERSEDED = (
    "This request was replaced by a newer one: use the latest message. Nothing was changed."
)


def requester_of(ticket: Ticket, found: Person | None) -> Mention:
    """The requester: the directory's entry when they are listed there, else the ticket's."""
    return listed(found) if found is not None else requester(ticket)


def requester_named(ticket: Ticket, found: Person | None) -> Mention:
    """`Ana Lopez (ana@example.com)`, from the directory when the requester is listed there."""
    return named(requester_of(ticket, found))


def manager_named(manager: Person | None, email: str = "") -> Inline:
    """The manager as texts name them (by the directory's entry, else the address asked)."""
    if manager is not None:
        return named(listed(manager))
    return Mention(email=email) if email else "the manager"


def channel_label(ticket: Ticket) -> Inline:
    """Through which channel the request came in (the platform's id of it shown literally)."""
    if ticket.source_platform == "slack":
        return Rich("Slack, channel ", Typed(ticket.source_channel))
    if ticket.source_channel.startswith("a:"):
        return "Microsoft Teams, personal chat with the help-desk bot"
    return Rich("Microsoft Teams, conversation ", Typed(ticket.source_channel))


def platform_name(platform: str) -> str:
    return {"slack": "Slack", "teams": "Microsoft Teams"}.get(platform, platform)


def request_card(
    ticket: Ticket,
    check: IdentityCheck,
    *,
    requester: Person | None,
    manager: Person,
    asker: Inline | None = None,
) -> Card:
    """The manager's DM: who asked, which technician, for what, which ticket, when, where.
    `asker`: the technician who started the check when that is not the ticket's own (whoever
    opened a ticket is on it as its technician, a requester opening their own included)."""
    who = requester_of(ticket, requester)
    facts: list[tuple[Inline, Inline]] = [
        ("Requester", who),
        ("Technician", asker or technician(ticket)),
        ("Request", Typed(ticket.summary)),
        ("Category", Typed(ticket.category) if ticket.category else "-"),
        ("Ticket", f"{ticket.number} ({ticket.priority})"),
        ("Asked at", when(ticket.created_at)),
        ("Channel", channel_label(ticket)),
        (ANSWER_BY, when(check.expires_at)),
    ]
    value = {NONCE_KEY: check.nonce}
    return Card(
        title=Rich(
            f"Identity check for {ticket.number}: did ", who, " ask the help desk for this?"
        ),
        body=[
            Text(
                Rich(
                    Typed(manager.name or manager.email),
                    ", the help desk needs you, as their manager, to confirm this request "
                    "really comes from them before a technician touches their account.",
                )
            ),
            Facts(facts),
            Text(
                "Approve only if you know they made this request. If you are not sure, or did "
                "not expect it, press Deny: the security team will look into it.",
                muted=True,
            ),
        ],
        buttons=[
            Button(ActionId.IDENTITY_APPROVE, "Approve", value, style="primary"),
            Button(ActionId.IDENTITY_DENY, "Deny", value, style="danger"),
        ],
        fallback=plain(request_text(ticket, requester=requester)),
    )


def request_text(ticket: Ticket, *, requester: Person | None) -> Rich:
    """The manager's request in a line (the card's fallback; the DM's text)."""
    who = requester_named(ticket, requester)
    return Rich(f"Identity check for {ticket.number}: did ", who, " ask for this? Approve or Deny.")


def with_answer_by(card: Card, deadline: datetime) -> Card:
    """The manager's request with its ANSWER_BY fact set to `deadline` (the other facts as
    they were)."""
    body = [
        replace(
            element,
            items=[
                (label, when(deadline)) if label == ANSWER_BY else (label, value)
                for label, value in element.items
            ],
        )
        if isinstance(element, Facts)
        else element
        for element in card.body
    ]
    return replace(card, body=body)


def outcome_card(ticket: Ticket, text: Inline) -> Card:
    """Replaces the DM once it no longer takes answers (no buttons)."""
    return Card(
        title=f"Identity check for {ticket.number}", body=[Text(text)], fallback=plain(text)
    )


def sent_text(
    ticket: Ticket, check: IdentityCheck, *, requester: Person | None, manager: Person
) -> Rich:
    return Rich(
        f"Identity check for {ticket.number}: asked ",
        manager_named(manager),
        ", manager of ",
        requester_named(ticket, requester),
        f", on {platform_name(check.manager_platform)} to "
        f"confirm. The answer counts until {when(check.expires_at)} (counted from delivery). "
        "Do not reset passwords, change MFA or discuss the account until it is confirmed.",
    )


def _no_manager_reason(
    ticket: Ticket, *, requester: Person | None, manager: Person | None, conflict: str
) -> Rich:
    """Why no manager on file can confirm the requester (`conflict`: the bot's words)."""
    who = requester_named(ticket, requester)
    if conflict and manager is not None:
        reason = Rich(
            f"{conflict} (",
            manager_named(manager),
            "), so their approval would not be an independent second channel",
        )
    elif requester is None:
        reason = Rich(who, " is not in the directory, so there is no manager on file")
    elif manager is None:
        reason = Rich("there is no manager on file for ", who)
    elif manager.disabled:
        reason = Rich(
            "the account of their manager on file, ",
            manager_named(manager),
            ", is disabled in the directory (they may have left), so they cannot confirm it",
        )
    elif manager.slack_id or manager.teams_id:
        # Known only on a platform this help desk is not connected to (Deps.platforms).
        where = " and ".join(
            platform_name(name)
            for name, known in (("slack", manager.slack_id), ("teams", manager.teams_id))
            if known
        )
        reason = Rich(
            "their manager ",
            manager_named(manager),
            f" is known only on {where}, which this help desk is not connected to, so the bot "
            "cannot ask them",
        )
    else:
        reason = Rich(
            "their manager ", manager_named(manager), " has no Slack or Teams account the bot knows"
        )
    return reason


def _record_hint(ticket: Ticket) -> str:
    return (
        " Once they have confirmed the request on that call, record it with "
        f"{CALLED_BACK} (or `ticket verify {ticket.number} called-back`)."
    )


def callback_text(
    ticket: Ticket, *, requester: Person | None, manager: Person | None, conflict: str = ""
) -> Rich:
    """No manager to ask: call back the number on file (from the directory, never the caller).
    Names the number: only for the technician (their private answer, their direct message)."""
    who = requester_named(ticket, requester)
    reason = _no_manager_reason(ticket, requester=requester, manager=manager, conflict=conflict)
    if requester is not None and requester.phone:
        action = Rich(
            "Call ",
            who,
            " back on ",
            Typed(requester.phone),
            ", the number on file in the directory "
            "(never a number the caller gives you), and confirm it is them",
        )
        record = _record_hint(ticket)
    else:
        action = Rich(
            "There is no phone number on file either: confirm their identity in person "
            "or through your team lead (never through a number the caller gives you)"
        )
        record = ""
    return Rich(
        f"Identity check for {ticket.number}: ",
        reason,
        ". ",
        action,
        ". The check stays open: "
        f"the ticket cannot be escalated or closed until the identity is confirmed.{record}",
    )


def technician_named(technician: str) -> Inline:
    """Who the number on file went to, as the outbox row recorded them (a name from the
    directory or their chat profile: shown literally)."""
    return Typed(technician) if technician else "the technician"


def callback_sent_text(
    ticket: Ticket,
    *,
    requester: Person | None,
    manager: Person | None,
    technician: str,
    conflict: str = "",
) -> Rich:
    """To the ticket's thread (which others may read): no manager to ask, and the number on
    file went to `technician` privately. Never names the number."""
    reason = _no_manager_reason(ticket, requester=requester, manager=manager, conflict=conflict)
    return Rich(
        f"Identity check for {ticket.number}: ",
        reason,
        ". The number on file in the directory was sent to ",
        technician_named(technician),
        " privately, in a direct message: call ",
        requester_named(ticket, requester),
        " back on it (never a number the caller gives "
        "you) and confirm it is them. The check stays open: the ticket cannot be escalated or "
        f"closed until the identity is confirmed.{_record_hint(ticket)}",
    )


def callback_dm_failed_text(ticket: Ticket, technician: str, error: str, *, final: bool) -> Rich:
    """To the ticket's thread: the direct message with the number on file has not reached
    the technician. Names no number."""
    state = "and will not be retried" if final else "yet; still retrying"
    return Rich(
        f"Identity check for {ticket.number}: the direct message with the number on file for "
        "the call-back could not be delivered to ",
        technician_named(technician),
        f" {state} (",
        Typed(error[:200]),
        f"). Run `ticket show {ticket.number}`: it shows the number on file only to you.",
    )


def callback_dm_delivered_text(ticket: Ticket, technician: str, attempt: int) -> Rich:
    return Rich(
        f"Identity check for {ticket.number}: the direct message with the number on file for "
        "the call-back has reached ",
        technician_named(technician),
        f" now (attempt {attempt}).",
    )


def callback_card(ticket: Ticket, check: IdentityCheck, text: Inline = "") -> Card:
    """The call-back notice with the technician's **Called back: confirmed** button, bound to
    this check's nonce (a stale or altered value is refused). Without `text` (a reply: the
    edges show the reply's text on top), only the button."""
    return Card(
        title=f"Identity check for {ticket.number}: call the requester back",
        # The text names people and a number from the directory: those parts are typed text.
        body=[Text(text)] if text else [],
        buttons=[
            Button(
                ActionId.IDENTITY_CALLED_BACK,
                CALLED_BACK,
                {NONCE_KEY: check.nonce},
                style="primary",
            )
        ],
        fallback=plain(text),
    )


def called_back_by(check: IdentityCheck) -> Mention:
    """The technician who recorded the call-back, as the directory had them then."""
    return Mention(
        name=check.answered_name,
        email=check.answered_email,
        slack_id=(check.answered_by or "") if check.answered_platform == "slack" else "",
        id=check.answered_by or "",
    )


def called_back_fact(check: IdentityCheck, *, mention: bool = True) -> Rich:
    """What the ticket card's Identity fact says of a check confirmed by call-back (`mention`
    False: the technician by name and e-mail, as texts name people)."""
    who = called_back_by(check)
    return Rich(
        "confirmed by call-back to the number on file by ",
        who if mention else named(who),
        f" at {when(check.answered_at)}",
    )


def check_outcome(check: IdentityCheck, *, number: bool = True) -> Inline:
    """A check's outcome as `show` lists it. `number`: name the number on file (to a
    technician; the requester asking about their own ticket is not told which number a
    technician will call: it goes only to technicians)."""
    if check.state == "called_back":
        if not number:
            return called_back_fact(check)
        return Rich(called_back_fact(check), " (", Typed(check.callback_phone), ")")
    if check.state in CALLBACK_STATES and check.callback_phone:
        # `show` answers only the one who asked: where the technician finds the number when
        # the direct message with it did not reach them.
        why = "no manager" if check.state == "no_manager" else "manager unreachable"
        if not number:
            return f"{why}: a technician will call back the number on file"
        return Rich(f"{why}: call back ", Typed(check.callback_phone), ", the number on file")
    return Rich(check.state, f" at {when(check.answered_at)}" if check.answered_by else "")


def shows_number(check: IdentityCheck) -> bool:
    """Whether `check_outcome` names the number on file."""
    return bool(check.callback_phone) and check.state in ("called_back", *CALLBACK_STATES)


def called_back_text(ticket: Ticket, check: IdentityCheck, *, number: bool = True) -> Rich:
    """The identity is confirmed by the technician's call-back. `number`: name the number
    called (the technician's own answer); the ticket's thread, which others may read, is told
    without it."""
    called = Rich(" (", Typed(check.callback_phone), ")") if number else ""
    return Rich(
        f"Identity confirmed for {ticket.number}: ",
        called_back_fact(check, mention=False),
        called,
        ". You may proceed.",
    )


def requester_disabled_text(
    ticket: Ticket, *, requester: Person, manager: Person | None, conflict: str = ""
) -> Rich:
    """The requester's own account is disabled: nobody is asked to vouch for it. Names no
    number on file (a leaver's number proves nothing, and this may go to a thread that is not
    a technician's)."""
    whom: Inline
    if manager is not None and not manager.disabled and not conflict:
        whom = Rich("their manager on file, ", manager_named(manager), ", or HR")
    else:
        whom = "HR or the requester's former manager"
    return Rich(
        f"Identity check for {ticket.number}: the account of the requester, ",
        requester_named(ticket, requester),
        ", is disabled in the directory (someone who "
        "left?), so no manager was asked to vouch for it. Do not reset passwords, change MFA "
        "or re-enable anything for them: check with ",
        whom,
        " through a channel you already "
        "know (never a number or address the caller gives you). The check stays open: the "
        "ticket cannot be escalated or closed until the identity is confirmed.",
    )


def verify_unavailable_text(number: str, error: DirectoryUnavailable) -> Rich:
    """`verify` while the directory cannot answer: nothing was asked, nothing changed."""
    return unavailable_words(
        error, f"the manager was not asked to confirm the requester of {number}"
    )


def intake_unavailable_text(ticket: Ticket, error: DirectoryUnavailable) -> Inline:
    """A ticket opened while the directory could not answer: the check waits for `verify`."""
    if isinstance(error, DirectoryAmbiguous):
        return Rich(
            f"The directory ({error.source}) has {error.count} entries with ",
            Typed(error.what),
            ", so "
            f"when {ticket.number} was opened it could not tell who the requester is (whether "
            "they are a VIP is not known) and no manager was asked to confirm their identity. "
            f"{ticket.number} needs a confirmed identity before it is escalated or closed: have "
            f"the duplicate entry removed from the directory, then run `verify {ticket.number}`.",
        )
    return (
        f"The directory ({error.source}) could not be reached when {ticket.number} was opened, "
        "so the requester could not be looked up (whether they are a VIP is not known) and "
        f"no manager was asked to confirm their identity. {ticket.number} needs a confirmed "
        f"identity before it is escalated or closed: run `verify {ticket.number}` once the "
        "directory is back."
    )


def approved_text(ticket: Ticket, check: IdentityCheck, manager: Inline, at: datetime) -> Rich:
    return Rich(
        f"Identity confirmed for {ticket.number}: ",
        manager,
        f" approved on {platform_name(check.manager_platform)} at {when(at)}. You may proceed.",
    )


def denied_text(ticket: Ticket, manager: Inline, *, security_told: bool) -> Rich:
    security = (
        "The security team has been notified."
        if security_told
        else "No security queue is configured: report this to your security team now."
    )
    return Rich(
        f"DO NOT PROCEED with {ticket.number}: ",
        manager,
        " denied that the requester made this "
        "request. Treat it as a possible impersonation: do not reset passwords, change MFA or "
        f"discuss the account. {security}",
    )


def security_text(ticket: Ticket, check: IdentityCheck, manager: Inline, at: datetime) -> Rich:
    return Rich(
        f"Possible impersonation on {ticket.number}: ",
        manager,
        " denied that ",
        requester_named(ticket, None),
        ' asked for "',
        Typed(ticket.summary),
        '" (category ',
        Typed(ticket.category) if ticket.category else "-",
        "). Technician: ",
        named(technician(ticket)),
        ". Request came in through ",
        channel_label(ticket),
        f" at {when(ticket.created_at)}; denied on "
        f"{platform_name(check.manager_platform)} at {when(at)}.",
    )


def late_text(ticket: Ticket) -> str:
    return (
        f"This identity confirmation request for {ticket.number} has expired, so your answer "
        "was not recorded. The technician can send a new one."
    )


def no_longer_manager_text(ticket: Ticket) -> str:
    """To a manager who answered after the directory stopped listing them as the requester's."""
    return (
        f"You are no longer listed as the requester's manager for {ticket.number}, so your "
        "answer was not recorded. Nothing was changed; the technician must run "
        f"`ticket verify {ticket.number}` to ask the manager now on file."
    )


def manager_changed_text(
    ticket: Ticket, manager: Inline, now: Inline, *, denied: bool = False
) -> Rich:
    """To the technician: the answer came from someone no longer the requester's manager."""
    if denied:
        return Rich(
            f"Identity check for {ticket.number}: ",
            manager,
            " pressed Deny, but the directory no longer lists them as the requester's manager (",
            now,
            "), so it was not recorded as a "
            "denial, and nothing was confirmed. Treat the request as a possible impersonation: "
            "do not reset passwords, change MFA or discuss the account. Run "
            f"`ticket verify {ticket.number}` only once you have checked with ",
            manager,
            ".",
        )
    return Rich(
        f"Identity check for {ticket.number}: ",
        manager,
        " answered, but the directory no longer lists them as the requester's manager (",
        now,
        f"), so nothing was confirmed. Run `ticket verify {ticket.number}` to ask the manager "
        "now on file.",
    )


def disabled_manager_reply(ticket: Ticket) -> str:
    """To a manager who answered once the directory had their account disabled."""
    return (
        "Your account is disabled in the directory, so your answer cannot confirm the "
        f"requester's identity for {ticket.number}. Nothing was changed."
    )


def disabled_requester_reply(ticket: Ticket) -> str:
    """To a manager who approved once the directory had the requester's account disabled."""
    return (
        f"The requester's account on {ticket.number} is disabled in the directory by now, so "
        "your approval cannot confirm their identity. Nothing was changed; the technician is "
        "told."
    )


def approval_of_disabled_requester_text(ticket: Ticket, manager: Inline) -> Rich:
    """To the technician: the manager approved, but the requester's account is disabled."""
    return Rich(
        f"Identity check for {ticket.number}: ",
        manager,
        " pressed Approve, but the requester's "
        "account is disabled in the directory by now (someone who left?), so nothing was "
        "confirmed. Do not reset passwords, change MFA or re-enable anything for them; check "
        "with their manager or HR through a channel you already know.",
    )


def manager_disabled_text(ticket: Ticket, manager: Inline, *, denied: bool = False) -> Rich:
    """To the technician: the manager answered, but their account is disabled by now."""
    why = "their account is disabled in the directory (they may have left)"
    then = (
        f"Run `ticket verify {ticket.number}` and confirm the identity by calling the "
        "requester back on the number on file."
    )
    if denied:
        return Rich(
            f"Identity check for {ticket.number}: ",
            manager,
            f" pressed Deny, but {why}, so it was "
            "not recorded as a denial, and nothing was confirmed. Treat the request as a "
            "possible impersonation: do not reset passwords, change MFA or discuss the "
            f"account. {then}",
        )
    return Rich(
        f"Identity check for {ticket.number}: ",
        manager,
        f" answered, but {why}, so nothing was confirmed. {then}",
    )


def account_changed_text(ticket: Ticket, manager: Inline, account: Inline, *, denied: bool) -> Rich:
    """To the technician: the request was answered from an account the directory no longer
    lists as the manager's."""
    pressed = "pressed Deny" if denied else "answered"
    return Rich(
        f"Identity check for {ticket.number}: the request was {pressed} from ",
        account,
        ", which is no longer ",
        manager,
        "'s account in the directory, so nothing was recorded or "
        "confirmed. Treat the request with suspicion: do not reset passwords, change MFA or "
        f"discuss the account. Run `ticket verify {ticket.number}` to ask ",
        manager,
        " on the account now on file.",
    )


def deny_unverified_text(ticket: Ticket, manager: Inline, source: str) -> Rich:
    """To the technician: the manager pressed Deny while the directory could not be reached."""
    return Rich(
        f"Identity check for {ticket.number}: ",
        manager,
        f" pressed Deny, but the directory ({source}) could not be reached to confirm they are "
        "still the requester's manager, "
        "so it was not recorded as a denial, and nothing was confirmed. Treat the request as a "
        "possible impersonation: do not reset passwords, change MFA or discuss the account. "
        "The manager was asked to answer again once the directory is back.",
    )


def expired_text(ticket: Ticket, manager: Inline, *, denied: bool = False) -> Rich:
    if denied:
        return Rich(
            f"Identity check for {ticket.number}: ",
            manager,
            " pressed Deny after the request "
            "expired, so it was not recorded as a denial, and nothing was confirmed. Treat the "
            "request as a possible impersonation: do not reset passwords, change MFA or discuss "
            f"the account. Run `ticket verify {ticket.number}` only once you have checked with ",
            manager,
            ".",
        )
    return Rich(
        f"Identity check for {ticket.number}: ",
        manager,
        " answered after the request expired, "
        f"so nothing was confirmed. Run `ticket verify {ticket.number}` to ask again.",
    )


def retrying_text(ticket: Ticket, check: IdentityCheck, *, error: str) -> Rich:
    """To the ticket's thread: the request has not reached the manager yet and is still being
    retried, so their answer is still the second channel (no call-back is taken meanwhile)."""
    return Rich(
        f"Identity check for {ticket.number}: the request has not reached the manager (",
        Typed(check.manager_email),
        f") on {platform_name(check.manager_platform)} yet (",
        Typed(error[:200]),
        "); the bot keeps trying. The identity is NOT confirmed: their answer is "
        "still the second channel, and you will be told here if the request cannot be "
        f"delivered at all. `ticket verify {ticket.number}` sends a fresh request.",
    )


def _unreachable_reason(check: IdentityCheck, error: str) -> Rich:
    return Rich(
        "the request to the manager (",
        Typed(check.manager_email),
        f") cannot be delivered on {platform_name(check.manager_platform)} (",
        Typed(error[:200]),
        ") and was given up, so no manager can confirm it",
    )


def _ask_again(ticket: Ticket) -> str:
    return (
        f" Once the manager's account is fixed in the directory, `ticket verify {ticket.number}` "
        "asks them again."
    )


_STAYS_OPEN = (
    " The check stays open: the ticket cannot be escalated or closed until the identity is "
    "confirmed."
)


def unreachable_callback_text(ticket: Ticket, check: IdentityCheck, *, error: str) -> Rich:
    """The manager's request failed for good: call back the number on file (from the
    directory, never the caller). Names the number: only for the technician who asked (their
    direct message)."""
    return Rich(
        f"Identity check for {ticket.number}: ",
        _unreachable_reason(check, error),
        ". Call ",
        requester_named(ticket, None),
        " back on ",
        Typed(check.callback_phone),
        ", the number on file in "
        "the directory (never a number the caller gives you), and confirm it is them."
        f"{_STAYS_OPEN}{_record_hint(ticket)}{_ask_again(ticket)}",
    )


def unreachable_text(
    ticket: Ticket, check: IdentityCheck, *, error: str, technician: str = ""
) -> Rich:
    """To the ticket's thread (which others may read): the manager's request failed for good
    and the call-back is open. Never names the number on file: it went to `technician` in a
    direct message, else `show` gives it to whoever asks (technicians and the requester)."""
    reason = _unreachable_reason(check, error)
    who = requester_named(ticket, None)
    if not check.callback_phone:
        return Rich(
            f"Identity check for {ticket.number}: ",
            reason,
            ". There is no phone number on file for ",
            who,
            " either: confirm their identity in person or through your team lead "
            f"(never through a number the caller gives you).{_STAYS_OPEN}{_ask_again(ticket)}",
        )
    if technician:
        where = Rich(
            "The number on file in the directory was sent to ",
            technician_named(technician),
            " privately, in a direct message: call ",
            who,
            " back on it",
        )
    else:
        where = Rich(
            "Call ",
            who,
            " back on the number on file in the directory (`ticket show "
            f"{ticket.number}` shows it only to you)",
        )
    return Rich(
        f"Identity check for {ticket.number}: ",
        reason,
        ". ",
        where,
        " (never a number the caller "
        f"gives you) and confirm it is them.{_STAYS_OPEN}{_record_hint(ticket)}"
        f"{_ask_again(ticket)}",
    )


def refusal(ticket: Ticket) -> str:
    """Why a technician-only action on a gated ticket is refused (None-safe for callers)."""
    if ticket.identity_state == "denied":
        return (
            f"{ticket.number}: the requester's manager denied their identity (possible "
            "impersonation). Do not proceed; the security team has been notified."
        )
    if ticket.identity_state == "pending":
        return (
            f"{ticket.number} needs the requester's identity confirmed first; the manager has "
            f"not answered yet (`ticket verify {ticket.number}` sends a fresh request)."
        )
    return (
        f"{ticket.number} needs the requester's identity confirmed first: run "
        f"`ticket verify {ticket.number}`."
    )
