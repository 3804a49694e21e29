-- Ferrocast's app store table for PostgreSQL, in soketi's `apps` layout: a table soketi
-- already reads is read unchanged (the defaults and the unique key below are extras that make
-- hand-written INSERTs shorter; they change nothing Ferrocast reads).
--
--   psql "$URL" -f packaging/sql/postgres.sql
--
-- Limits: -1 means no limit; NULL (or a column left out) keeps Ferrocast's default.
-- Sizes are in kilobytes. `webhooks` is a JSON array of
-- {"url", "event_types", "headers", "filter": {"channel_name_starts_with", "channel_name_ends_with"}}.

CREATE TABLE IF NOT EXISTS apps (
    id varchar(255) PRIMARY KEY,
    "key" varchar(255) NOT NULL UNIQUE,
    secret varchar(255) NOT NULL,
    max_connections integer NOT NULL DEFAULT -1,
    enable_client_messages smallint NOT NULL DEFAULT 0,
    "enabled" smallint NOT NULL DEFAULT 1,
    max_backend_events_per_sec integer NOT NULL DEFAULT -1,
    max_client_events_per_sec integer NOT NULL DEFAULT -1,
    max_read_req_per_sec integer NOT NULL DEFAULT -1,
    max_presence_members_per_channel integer DEFAULT NULL,
    max_presence_member_size_in_kb integer DEFAULT NULL,
    max_channel_name_length integer DEFAULT NULL,
    max_event_channels_at_once integer DEFAULT NULL,
    max_event_name_length integer DEFAULT NULL,
    max_event_payload_in_kb integer DEFAULT NULL,
    max_event_batch_size integer DEFAULT NULL,
    webhooks json,
    enable_user_authentication smallint NOT NULL DEFAULT 0
);

-- Every change to a row is announced on a LISTEN channel with the app's id as the payload, so
-- that a running server re-reads that app at once instead of when its cache expires. The
-- channel is the trigger's argument: keep it equal to `[app_store] notify_channel`.
-- When an UPDATE changes the id, both the old and the new id are announced.
CREATE OR REPLACE FUNCTION ferrocast_apps_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' OR TG_OP = 'DELETE' THEN
        PERFORM pg_notify(TG_ARGV[0], OLD.id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id) THEN
        PERFORM pg_notify(TG_ARGV[0], NEW.id);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS ferrocast_apps_changed ON apps;
CREATE TRIGGER ferrocast_apps_changed
    AFTER INSERT OR UPDATE OR DELETE ON apps
    FOR EACH ROW EXECUTE PROCEDURE ferrocast_apps_notify('ferrocast_apps');
