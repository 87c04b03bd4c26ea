"""SQLAlchemy tables: deliveries, alerts, tickets and notes, the outbox, and the reference data.

The schema is owned by Alembic (daemon/store/migrations); these classes must match the latest
revision (tests/test_migrations.py compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zone type and drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite: the text SQLAlchemy's DATETIME stores ("2026-12-07 00:14:31.000123") in one
        # step instead of this type's and then the dialect's (~1 us per value, several per
        # row on the intake path). tests/component/test_prepared.py holds them equal. The
        # last value's text is kept, as one (aware datetime, text) pair read and replaced
        # whole (threads may share it): a group's rows mostly carry one `now`.
        last: list[tuple[datetime | None, str]] = [(None, "")]

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            seen, seen_text = last[0]
            if value == seen:  # aware datetimes compare as instants: the same text
                return seen_text
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            last[0] = (value, text)
            return text
        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Stable constraint names so Alembic migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Delivery(Base):
    """Every raw input, stored before it is acknowledged, with its processing state."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("channel", "dedupe_key"),
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        # The newest delivery of a channel, and of a webhook or polling source (GET
        # /api/status, /api/webhooks/config): one index seek, however many rows.
        Index("ix_deliveries_channel_id", "channel", "id"),
        Index("ix_deliveries_channel_source_id", "channel", "source", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    trace: Mapped[Any] = mapped_column(JSON, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(32))
    content_type: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)


class Alert(Base):
    """One upstream alert, unique per source and upstream id, whatever channels carried it."""

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("source", "uid"),
        # The expiry job's lookup of the open alerts a rule gave an expiry (the column is
        # cleared when an alert resolves, so the non-null entries are just those). Not a
        # partial index: its dialect-specific WHERE would load the PostgreSQL dialect on
        # SQLite too (tests/system/test_idle_imports.py).
        Index("ix_alerts_expire_after_s", "expire_after_s"),
        # A ticket's alerts in order (its page), and its open ones (a resolve asks whether
        # others are open; a flapping condition's ticket may hold thousands of resolved ones).
        Index("ix_alerts_ticket_id_id", "ticket_id", "id"),
        Index("ix_alerts_ticket_id_state", "ticket_id", "state"),
        # The suppressed alerts waiting for their ticket (the column is cleared when one gets
        # its ticket or is resolved, so the entries are just those).
        Index("ix_alerts_held_since", "held_since"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    uid: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16), index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(16))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    occurrences: Mapped[int] = mapped_column(Integer, default=1)
    device: Mapped[str | None] = mapped_column(String(255))
    site: Mapped[str | None] = mapped_column(String(255))
    customer: Mapped[str | None] = mapped_column(String(255))
    priority: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text)
    # While open: the opening email rule's `expire_after` in seconds (else its source's, from
    # the config, applies). Cleared when the alert resolves.
    expire_after_s: Mapped[int | None] = mapped_column(Integer)
    # The ticket this alert belongs to: the one it opened, or the open ticket of its condition
    # it joined (issue 16, rule 2). No foreign key (migration 0010): written only by the
    # lifecycle, with the id of the ticket it has just locked.
    ticket_id: Mapped[int | None] = mapped_column(BigId)
    # Which condition the alert reports (daemon.core.conditions.condition_key), if known.
    condition: Mapped[str | None] = mapped_column(String(255))
    # The RMM's id of its device, when a copy carried it (webhook, poll) or the API named it
    # for a mail alert (daemon.rmm.mail_devices; "" when Datto named none).
    device_ref: Mapped[str | None] = mapped_column(String(200))
    # The maintenance window that held its ticket back ("window 3", "weekly window 'patch
    # night'"): while it has no ticket and is open, it gets one when no window covers it.
    suppressed_by: Mapped[str | None] = mapped_column(String(100), index=True)
    # While suppressed: what its ticket is to be made of when the window ends (the raise's
    # ticket fields and device id, which the alert itself does not keep).
    held: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # When it was suppressed, while it waits for its ticket (cleared as `held` is).
    held_since: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Ticket(Base):
    """A ticket. Its summary and details are also in a full-text index that only the
    migrations know (backend-specific: daemon/store/ticket_search.py)."""

    __tablename__ = "tickets"
    # A customer's or a site's tickets, newest first, in one index range (GET /api/tickets).
    __table_args__ = (
        Index("ix_tickets_customer_id_id", "customer_id", "id"),
        Index("ix_tickets_site_id_id", "site_id", "id"),
        # The newest ticket of a condition: open, a raise joins it; closed a moment ago, a
        # raise reopens it (issue 16, rules 2 and 3).
        Index("ix_tickets_condition_id", "condition", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(500))
    details: Mapped[str] = mapped_column(Text, default="")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_users.id"))
    # The alert that opened it (unique: an alert opens at most one ticket, enforced by the
    # database). All of its alerts, this one included, name it in `alerts.ticket_id`.
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), unique=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    # When an agent first added a note or changed it (`[lifecycle] auto_close = "untouched"`).
    touched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its alert was resolved upstream while the ticket was left open.
    upstream_resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Its alerts' condition (rule 2): a raise of the same condition joins it while it is open.
    condition: Mapped[str | None] = mapped_column(String(255))
    # Raises counted on it: the one that opened it, those that joined it, those that reopened it.
    occurrences: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # The last raise that opened, joined or reopened it: a raise within a burst of them adds
    # no note of its own.
    last_raised_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when its alerts are all resolved and `close_after_clear` holds the close back: the
    # ticket closes then, unless a raise of its condition comes first.
    close_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    notes: Mapped[list[TicketNote]] = relationship(order_by="TicketNote.id")


class AlertTrail(Base):
    """One decision alertd took about an alert, with its reason (issue 16, rule 7): what every
    raise and resolve did, expiry, an agent's close."""

    __tablename__ = "alert_trail"
    # An alert's trail, newest first, in one index range.
    __table_args__ = (Index("ix_alert_trail_alert_id_id", "alert_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    decision: Mapped[str] = mapped_column(String(32))  # an Outcome, or an action's name
    channel: Mapped[str | None] = mapped_column(String(16))  # which channel reported it
    actor: Mapped[str | None] = mapped_column(String(200))  # an agent, for their actions
    reason: Mapped[str | None] = mapped_column(Text)


class MaintenanceWindow(Base):
    """A maintenance window set through the API or the CLI (issue 16, rule 4): raises in its
    scope between `starts_at` and `ends_at` open no ticket. Ending one early moves `ends_at`."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # all | customer | site | device
    value: Mapped[str] = mapped_column(String(255))  # a name or an id ("" for all)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    ended_by: Mapped[str | None] = mapped_column(String(200))  # who ended it early


class TicketNote(Base):
    __tablename__ = "ticket_notes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)


class OutboxAction(Base):
    """An action alertd owes an upstream system (resolve an alert) or a `[[notify]]` target
    (tell of a ticket's change); sent by a worker."""

    __tablename__ = "outbox"
    # One resolve per alert, however many times its ticket is closed or the echo arrives.
    __table_args__ = (
        UniqueConstraint("action", "alert_id"),
        Index("ix_outbox_status_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    # Indexed on its own: an alert's outbox rows (the console's ticket page) are found
    # without reading the whole outbox; (action, alert_id) cannot be entered by alert_id.
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id"), index=True)
    # A notification (action "notify"): the ticket it tells of, and what the event adds.
    ticket_id: Mapped[int | None] = mapped_column(BigId)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImapCheckpoint(Base):
    """Where an IMAP account's folder was read up to: UIDs are only meaningful together
    with the folder's UIDVALIDITY (RFC 3501 2.3.1.1)."""

    __tablename__ = "imap_checkpoints"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    folder: Mapped[str] = mapped_column(String(255), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- reference data, filled by the sync issue ------------------------------------------------


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    top_level: Mapped[str | None] = mapped_column(String(255))  # Halo's grouping of customers
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AssetGroup(Base):
    __tablename__ = "asset_groups"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class AssetType(Base):
    __tablename__ = "asset_types"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    asset_group_id: Mapped[int | None] = mapped_column(ForeignKey("asset_groups.id"))


class EndUser(Base):
    __tablename__ = "end_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(64))
    # The customer's default contact: the end user of alert tickets without an asset user.
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Asset(Base):
    __tablename__ = "assets"
    # The sync matches assets by serial or name without case (daemon.sync.persist).
    __table_args__ = (
        Index("ix_assets_serial_lower", func.lower(text("serial"))),
        Index("ix_assets_name_lower", func.lower(text("name"))),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), index=True)
    asset_type_id: Mapped[int | None] = mapped_column(ForeignKey("asset_types.id"))
    end_user_id: Mapped[int | None] = mapped_column(ForeignKey("end_users.id"))
    name: Mapped[str] = mapped_column(String(255), index=True)
    serial: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExternalRef(Base):
    """Ties a local record to its id in an RMM (one record may be known to several)."""

    __tablename__ = "external_refs"
    __table_args__ = (
        UniqueConstraint("entity", "source", "external_id"),
        Index("ix_external_refs_local", "entity", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))  # customer|site|asset|end_user|asset_type
    entity_id: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))


class SyncRun(Base):
    """One applied run of the sync (scheduled or `alertd sync`) and what it did; previews
    are not recorded."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    entities: Mapped[str] = mapped_column(String(64))  # "customers,assets"
    trigger: Mapped[str] = mapped_column(String(16))  # schedule | cli | api
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # running | ok | failed
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)


class ConsoleSession(Base):
    """A signed-in web console session. The cookie holds a random secret; only its SHA-256 is
    stored here, and of the API token it was opened with only the SHA-256 (a token removed
    from the configuration ends its sessions)."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie
    token_sha256: Mapped[str] = mapped_column(String(64))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
