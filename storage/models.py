"""SQLAlchemy 2 typed models. Alembic owns the schema (storage/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite stores naive text otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BigInteger ids that still autoincrement on SQLite (which only does so for INTEGER).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class TicketCounter(Base):
    """Next ticket number per prefix; bumped with UPDATE ... RETURNING (row lock / writer lock)."""

    __tablename__ = "ticket_counters"
    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("prefix", "seq", name="uq_tickets_prefix_seq"),
        # `mine`: newest open tickets of a person, straight from the index.
        Index("ix_tickets_requester_open", "requester_id", "status", "id"),
        Index("ix_tickets_technician_open", "technician_id", "status", "id"),
        # `mine` for a requester on file by e-mail (compared in any case: `lower` both sides).
        Index("ix_tickets_requester_email_open", text("lower(requester_email)"), "status", "id"),
        # `report`: every count it makes comes from this index alone. Its leading columns are
        # the report's GROUP BY (no sort); the rest is what the filters and aggregates read.
        Index(
            "ix_tickets_report",
            "priority",
            "category",
            "resolution_category",
            "client",
            "created_at",
            "status",
            "respond_met",
            "resolve_met",
            "respond_by",
            "resolve_by",
            "time_minutes",
            "csat_rating",
            "csat_sent_at",
            "fix_confirmed_at",
        ),
        # Medians walk these in order (LIMIT/OFFSET), filtered by period and client.
        Index("ix_tickets_first_response", "first_response_seconds", "created_at", "client"),
        Index("ix_tickets_resolution", "resolution_seconds", "created_at", "client"),
        # Open P1s (duplicate reports are matched against them at intake).
        Index("ix_tickets_priority_status", "priority", "status", "id"),
        # A Slack message in a ticket's thread finds its ticket.
        Index("ix_tickets_thread", "source_thread", "source_channel"),
        # The reports filed under a P1.
        Index("ix_tickets_filed_under", "filed_under"),
        # A Teams reply chain's ticket card (a technician's reply there is its first response).
        Index("ix_tickets_card", "card_channel", "card_message"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed

    summary: Mapped[str] = mapped_column(Text)
    error_text: Mapped[str] = mapped_column(Text, default="")
    doing: Mapped[str] = mapped_column(Text, default="")
    reproducible: Mapped[str] = mapped_column(String(16))  # yes | no | intermittent
    users_affected: Mapped[int] = mapped_column(Integer, default=1)
    priority: Mapped[str] = mapped_column(String(2))  # P1..P4
    category: Mapped[str] = mapped_column(String(200), default="")
    asset: Mapped[str] = mapped_column(String(500), default="")
    client: Mapped[str] = mapped_column(String(200), default="")
    tier: Mapped[str] = mapped_column(String(64))
    # Where the tier came from: config (sla.clients) | default | pending (asking the PSA) |
    # psa (a contract in psa.tiers) | psa-none (no such contract) | psa-error; '' before 0006.
    tier_source: Mapped[str] = mapped_column(String(16), default="", server_default="")
    tier_contract: Mapped[str] = mapped_column(String(200), default="", server_default="")

    # People by platform id; name/email are what the directory (or the form) said.
    requester_id: Mapped[str] = mapped_column(String(255))
    requester_name: Mapped[str] = mapped_column(String(255), default="")
    requester_email: Mapped[str] = mapped_column(String(320), default="")
    technician_id: Mapped[str] = mapped_column(String(255))
    technician_name: Mapped[str] = mapped_column(String(255), default="")
    technician_email: Mapped[str] = mapped_column(String(320), default="", server_default="")

    source_platform: Mapped[str] = mapped_column(String(8))  # slack | teams
    source_channel: Mapped[str] = mapped_column(String(255))
    # Where the ticket card landed (Slack message ts / Teams activity id): the ticket's thread.
    source_thread: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Where the ticket card message itself is (it is refreshed when the ticket changes).
    card_channel: Mapped[str | None] = mapped_column(String(255), nullable=True)
    card_message: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # Teams: a closure or escalation form took the card message's place (Action.Execute's
    # answer) and is kept there until then: refreshes of the card wait (handlers.notify
    # `hold_card_for_form`), else they would overwrite what the technician is typing.
    card_form_until: Mapped[datetime | None] = mapped_column(nullable=True)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    respond_by: Mapped[datetime]
    resolve_by: Mapped[datetime]
    priority_warning: Mapped[str] = mapped_column(Text, default="")

    # Identity confirmation: not_required | required | pending | confirmed | denied
    identity_state: Mapped[str] = mapped_column(String(16), default="not_required")
    requester_vip: Mapped[bool] = mapped_column(default=False)
    # The requester's account is disabled in the directory (someone who left?): at intake, and
    # as each identity check found it; the card warns (0017).
    requester_disabled: Mapped[bool] = mapped_column(default=False, server_default=false())

    # The SLA clock (handlers/sla): the first technician action stops the respond clock;
    # each target's outcome is stored once known (None: pending).
    first_response_at: Mapped[datetime | None] = mapped_column(nullable=True)
    first_response_by: Mapped[str] = mapped_column(String(255), default="", server_default="")
    first_response_channel: Mapped[str] = mapped_column(String(255), default="", server_default="")
    respond_met: Mapped[bool | None] = mapped_column(nullable=True)
    resolve_met: Mapped[bool | None] = mapped_column(nullable=True)
    # Kept for `report` (SQL aggregates over the ticket row alone): whole seconds from
    # creation to the first response / to closure, every minute logged (time entries and the
    # closure's Time spent), the CSAT answer and when its survey went out, and when the
    # requester confirmed the fix (fix_confirmed_at, below).
    first_response_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolution_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    csat_rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    csat_sent_at: Mapped[datetime | None] = mapped_column(nullable=True)

    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolution_note: Mapped[str] = mapped_column(Text, default="")
    resolution_category: Mapped[str] = mapped_column(String(16), default="")
    kb_article: Mapped[str] = mapped_column(String(500), default="")

    # The system of record (SPEC "System of record"): which PSA the ticket is synced to ('' =
    # none), its id there (for API calls) and the number people know it by (INC0010001, #4123).
    psa_system: Mapped[str] = mapped_column(String(16), default="", server_default="")
    psa_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    psa_number: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # Working the ticket to the end (0009). Support scope from `tier1_scope` at intake:
    # tier1 | tier23 ('' before 0009: not shown).
    support_tier: Mapped[str] = mapped_column(String(8), default="", server_default="")
    # The remote-session link for the asset (from `remote.url_template` at intake).
    remote_url: Mapped[str] = mapped_column(Text, default="", server_default="")
    # The open P1 this ticket matched at intake (same client and asset, or the same error).
    p1_match: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # The P1 this ticket is filed under as one more report of the same problem.
    filed_under: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # On a P1: how many reports are filed under it, and their users affected.
    filed_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    filed_users: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The requester's answer to `confirm`: '' | asked | works | broken, and when.
    fix_state: Mapped[str] = mapped_column(String(16), default="", server_default="")
    fix_state_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Set once the requester answered Works now (who: their platform user id).
    fix_confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    fix_confirmed_by: Mapped[str] = mapped_column(String(255), default="", server_default="")

    @property
    def total_users_affected(self) -> int:
        """Its own users affected plus those of every report filed under it."""
        return (self.users_affected or 0) + (self.filed_users or 0)


class TicketEvent(Base):
    """Append-only audit trail: who did what, when, through which channel."""

    __tablename__ = "ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket", "ticket_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(64))
    actor_platform: Mapped[str] = mapped_column(String(8), default="")
    actor_id: Mapped[str] = mapped_column(String(255), default="")
    channel: Mapped[str] = mapped_column(String(255), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)


class InboundDelivery(Base):
    """Ids of handled inbound deliveries: a retry or replay hits the primary key and stops.
    Kept for `storage.inbound.KEEP`, then pruned oldest first (by `at`)."""

    __tablename__ = "inbound_deliveries"
    __table_args__ = (Index("ix_inbound_deliveries_at", "at"),)
    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the change answered, for a redelivery of it (storage.inbound.Recorded; JSON text).
    answer: Mapped[str | None] = mapped_column(Text, default=None)


class OutboxMessage(Base):
    """A side effect to deliver (post, DM, page, survey, reminder), written with its cause.
    Once finished and old enough, trimmed to what is still read (storage.outbox_retention)."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "due_at"),
        # `ticket show` lists a ticket's deliveries; without this it scans the whole outbox.
        Index("ix_outbox_ticket", "ticket_id", "id"),
        # The retention job walks the rows not trimmed yet by age; trimmed ones (nearly all,
        # in time) are left out of the index.
        Index(
            "ix_outbox_untrimmed",
            "due_at",
            sqlite_where=text("trimmed_at IS NULL"),
            postgresql_where=text("trimmed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), nullable=True)
    # Set when a side effect must happen at most once per cause (e.g. the P1 page of HD-7).
    dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending -> (claimed) -> delivered | dead
    status: Mapped[str] = mapped_column(String(16), default="pending")
    due_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    failure_reported: Mapped[bool] = mapped_column(default=False)
    # An earlier attempt may have arrived without being recorded (its worker died or lost the
    # database mid-attempt, or it timed out): look for it before sending again.
    in_doubt: Mapped[bool] = mapped_column(default=False, server_default=false())
    # When the finished row was trimmed to what is still read (None: kept whole).
    trimmed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ConversationRef(Base):
    """Teams conversation references (and Slack DM channels) for proactive messages."""

    __tablename__ = "conversation_refs"
    __table_args__ = (UniqueConstraint("platform", "key", name="uq_conversation_refs_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    platform: Mapped[str] = mapped_column(String(8))
    # A user id (for 1:1 chats) or a conversation id.
    key: Mapped[str] = mapped_column(String(400))
    reference: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TimeEntry(Base):
    __tablename__ = "time_entries"
    __table_args__ = (Index("ix_time_entries_ticket", "ticket_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    minutes: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")
    actor_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class IdentityCheck(Base):
    """One request to a manager; answers bind to this row's secret nonce, not to button text."""

    __tablename__ = "identity_checks"
    __table_args__ = (Index("ix_identity_checks_ticket", "ticket_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    # pending | approved | denied | superseded | expired | no_manager | unreachable (the request
    # to the manager was given up undelivered: a call-back can confirm it) | called_back
    state: Mapped[str] = mapped_column(String(16), default="pending")
    manager_email: Mapped[str] = mapped_column(String(320), default="")
    manager_platform: Mapped[str] = mapped_column(String(8), default="")
    manager_id: Mapped[str] = mapped_column(String(255), default="")
    requested_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The requester's number on file (from the directory, never typed) the technician is told
    # to call back: with no manager to ask, or once the manager's request is given up (read
    # when it was made); a `called_back` check names the technician
    # who recorded the call-back (platform, name and e-mail as the directory had them).
    callback_phone: Mapped[str] = mapped_column(String(64), default="", server_default="")
    answered_platform: Mapped[str] = mapped_column(String(8), default="", server_default="")
    answered_name: Mapped[str] = mapped_column(String(255), default="", server_default="")
    answered_email: Mapped[str] = mapped_column(String(320), default="", server_default="")


class FixConfirmation(Base):
    """One `confirm` request to the requester; answers bind to its nonce and their user id."""

    __tablename__ = "fix_confirmations"
    __table_args__ = (Index("ix_fix_confirmations_ticket", "ticket_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    # pending | works | broken | superseded
    state: Mapped[str] = mapped_column(String(16), default="pending")
    # Where the request went: only this user may answer.
    platform: Mapped[str] = mapped_column(String(8))
    user_id: Mapped[str] = mapped_column(String(255))
    asked_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    answered_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")


class TicketAttachment(Base):
    """A file someone shared on a ticket: a link to where the platform keeps it, never its
    bytes."""

    __tablename__ = "ticket_attachments"
    __table_args__ = (
        UniqueConstraint("ticket_id", "platform", "file_key", name="uq_ticket_attachments_file"),
        Index("ix_ticket_attachments_ticket", "ticket_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    platform: Mapped[str] = mapped_column(String(8))
    # The platform's file id (Slack), or a hash of the link (Teams): one row per file.
    file_key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(500))
    url: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(255), default="")
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    actor_id: Mapped[str] = mapped_column(String(255))
    actor_name: Mapped[str] = mapped_column(String(255), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)


class CsatSurvey(Base):
    __tablename__ = "csat_surveys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), unique=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    requester_platform: Mapped[str] = mapped_column(String(8))
    requester_id: Mapped[str] = mapped_column(String(255))
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PsaState(Base):
    """What the bot knows about the PSA as a whole: a Retry-After or refused credentials.

    Shared by every process, so no worker calls a PSA that asked for a pause, and the
    technicians are told once per outage, not once per write.
    """

    __tablename__ = "psa_state"

    system: Mapped[str] = mapped_column(String(16), primary_key=True)
    # No call to the PSA before this (Retry-After; or the next credentials check).
    blocked_until: Mapped[datetime | None] = mapped_column(nullable=True)
    # Set while the PSA refuses the credentials (401/403): when that started, and its answer.
    auth_failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    auth_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PlaceWindow(Base):
    """A Retry-After window of one place (a Slack channel, a Teams conversation...), shared by
    every process on the database: nothing goes to `place` before `blocked_until`."""

    __tablename__ = "place_windows"

    place: Mapped[str] = mapped_column(Text, primary_key=True)
    blocked_until: Mapped[datetime]


class TicketSignature(Base):
    """What identifies a ticket's error (`hex:0x80070005`, `exact:<digest>`...), indexed so
    tickets with the same error are found without reading their texts."""

    __tablename__ = "ticket_signatures"
    __table_args__ = (Index("ix_ticket_signatures_signature", "signature", "ticket_id"),)

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    signature: Mapped[str] = mapped_column(String(120), primary_key=True)


class TicketDiagnosis(Base):
    """What the ticket card shows to help diagnosis, worked out when the ticket was opened
    (similar tickets, pattern, change hints) or later (KB articles)."""

    __tablename__ = "ticket_diagnosis"

    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), primary_key=True)
    # [{number, client, resolution, kb_article}]: earlier resolved tickets with the same error.
    similar: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Tickets with the same error, this one included, when it made or joined a pattern.
    pattern_count: Mapped[int] = mapped_column(Integer, default=0)
    pattern_earlier: Mapped[list[Any]] = mapped_column(JSON, default=list)
    pattern_label: Mapped[str] = mapped_column(String(200), default="")
    suggested_kb: Mapped[str] = mapped_column(String(500), default="")
    hints: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # KB articles for the card: none | pending | ok | unavailable | refused | limited |
    # misconfigured | error
    kb_state: Mapped[str] = mapped_column(String(16), default="none")
    kb_source: Mapped[str] = mapped_column(String(32), default="")
    kb_articles: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The ticket card shows this section: only when a technician opened the ticket (its card is
    # where the opener typed; what it lists of other clients is for technicians, as `similar`).
    on_card: Mapped[bool] = mapped_column(default=True, server_default=true())
