"""Tables of the notifications service.

``contacts`` is a read model of the ``Contact`` aggregates (rebuildable from the
store). The rest is the delivery bookkeeping derived from other services'
events, written in the same transaction as the inbox record of the event that
caused it (``shared.consumer.Inbox``):

* ``source_events``: every event a rule applied to (so ops can retry a parked notice);
* ``notices``: one per (event, recipient, notice type) — the in-app inbox (站内信);
* ``deliveries``: one per notice and channel — the outbox the delivery loop sends
  from; its unique key is the deduplication key (event id, recipient, channel);
* ``eval_cycles`` / ``eval_submissions`` / ``eval_extensions``: what the deadline
  timer needs to know;
* ``deadline_reminders``: the unique key that makes a reminder happen once,
  across restarts and across instances.
"""
from __future__ import annotations

from shared.projection import Projection, handles
from services.notifications.domain import Contact

DDL = (
    """CREATE TABLE IF NOT EXISTS contacts (
        recipient_id text PRIMARY KEY, contact_id uuid NOT NULL, name text NOT NULL,
        kind text NOT NULL, email text, webhook_url text, groups text[] NOT NULL DEFAULT '{}',
        preferences jsonb NOT NULL DEFAULT '{}', active bool NOT NULL,
        updated_at timestamptz NOT NULL, version int NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS contacts_groups ON contacts USING gin (groups)",
    """CREATE TABLE IF NOT EXISTS source_events (
        event_id text PRIMARY KEY, source text NOT NULL, type text NOT NULL,
        envelope jsonb NOT NULL, received_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS notices (
        id bigserial PRIMARY KEY, event_id text NOT NULL, source text NOT NULL,
        event_type text NOT NULL, rule text NOT NULL, notice_type text NOT NULL,
        recipient_id text NOT NULL, recipient_name text, org_id text, org_name text,
        subject text NOT NULL DEFAULT '', body text NOT NULL DEFAULT '', deadline text,
        status text NOT NULL, error text, occurred_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(), read_at timestamptz,
        UNIQUE (event_id, recipient_id, notice_type))""",
    """CREATE INDEX IF NOT EXISTS notices_inbox ON notices
        (recipient_id, (read_at IS NOT NULL), created_at DESC) WHERE status = 'visible'""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        id bigserial PRIMARY KEY,
        notice_id bigint NOT NULL REFERENCES notices (id) ON DELETE CASCADE,
        event_id text NOT NULL, recipient_id text NOT NULL, channel text NOT NULL,
        notice_type text NOT NULL, address text, status text NOT NULL,
        attempts int NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT now(),
        last_error text, instance text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        sent_at timestamptz, parked_at timestamptz,
        UNIQUE (event_id, recipient_id, notice_type, channel))""",
    """CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at)
        WHERE status IN ('pending', 'retrying', 'sending')""",
    "CREATE INDEX IF NOT EXISTS deliveries_parked ON deliveries (parked_at) WHERE status = 'parked'",
    """CREATE TABLE IF NOT EXISTS eval_cycles (
        cycle_id text PRIMARY KEY, name text NOT NULL, org_ids jsonb NOT NULL,
        deadlines jsonb NOT NULL, opened_at timestamptz NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS eval_submissions (
        cycle_id text NOT NULL, org_id text NOT NULL, stage text NOT NULL,
        submitted_at timestamptz NOT NULL, PRIMARY KEY (cycle_id, org_id, stage))""",
    """CREATE TABLE IF NOT EXISTS eval_extensions (
        cycle_id text NOT NULL, org_id text NOT NULL, stage text NOT NULL, until text NOT NULL,
        PRIMARY KEY (cycle_id, org_id, stage))""",
    """CREATE TABLE IF NOT EXISTS deadline_reminders (
        cycle_id text NOT NULL, stage text NOT NULL, org_id text NOT NULL,
        deadline text NOT NULL, instance text, created_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (cycle_id, stage, org_id, deadline))""",
)


class ContactsReadModel(Projection):
    ddl = DDL
    tables = ("contacts",)  # only this is a projection; the rest is not rebuilt from the store

    @handles(Contact.Registered)
    def registered(self, curs, e):
        curs.execute(
            "INSERT INTO contacts (recipient_id, contact_id, name, kind, email, webhook_url, "
            "groups, active, updated_at, version) VALUES (%s,%s,%s,%s,%s,%s,%s,true,%s,%s) "
            "ON CONFLICT (recipient_id) DO NOTHING",
            (e.recipient_id, e.originator_id, e.name, e.kind, e.email, e.webhook_url,
             list(e.groups), e.timestamp, e.originator_version))

    @handles(Contact.Changed)
    def changed(self, curs, e):
        allowed = {"name", "email", "webhook_url", "groups"}
        changes = {k: v for k, v in e.changes.items() if k in allowed}
        sets = ", ".join(f"{k} = %s" for k in changes)
        curs.execute(
            f"UPDATE contacts SET {sets + ', ' if sets else ''}updated_at = %s, version = %s "
            "WHERE contact_id = %s",
            (*changes.values(), e.timestamp, e.originator_version, e.originator_id))

    @handles(Contact.PreferencesSet)
    def preferences_set(self, curs, e):
        from psycopg.types.json import Jsonb

        curs.execute("UPDATE contacts SET preferences = %s, updated_at = %s, version = %s "
                     "WHERE contact_id = %s",
                     (Jsonb(e.preferences), e.timestamp, e.originator_version, e.originator_id))

    @handles(Contact.Deactivated)
    def deactivated(self, curs, e):
        curs.execute("UPDATE contacts SET active = false, updated_at = %s, version = %s "
                     "WHERE contact_id = %s", (e.timestamp, e.originator_version, e.originator_id))
