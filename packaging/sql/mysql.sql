-- Ferrocast's app store table for MySQL and MariaDB, in soketi's `apps` layout: a table soketi
-- already reads is read unchanged (the defaults and the unique key below are extras that make
-- hand-written INSERTs shorter; they change nothing Ferrocast reads).
--
--   mysql --database=ferrocast < packaging/sql/mysql.sql
--
-- Limits: -1 means no limit; NULL (or a column left out) keeps Ferrocast's default.
-- Sizes are in kilobytes. `webhooks` is a JSON array of
-- {"url", "event_types", "headers", "filter": {"channel_name_starts_with", "channel_name_ends_with"}}.
-- MySQL has no LISTEN/NOTIFY: a change takes effect when the server's cache of that app
-- expires (`[app_store] cache_ttl_secs`).

CREATE TABLE IF NOT EXISTS `apps` (
    `id` varchar(255) NOT NULL,
    `key` varchar(255) NOT NULL,
    `secret` varchar(255) NOT NULL,
    `max_connections` int NOT NULL DEFAULT -1,
    `enable_client_messages` tinyint(1) NOT NULL DEFAULT 0,
    `enabled` tinyint(1) NOT NULL DEFAULT 1,
    `max_backend_events_per_sec` int NOT NULL DEFAULT -1,
    `max_client_events_per_sec` int NOT NULL DEFAULT -1,
    `max_read_req_per_sec` int NOT NULL DEFAULT -1,
    `max_presence_members_per_channel` int DEFAULT NULL,
    `max_presence_member_size_in_kb` int DEFAULT NULL,
    `max_channel_name_length` int DEFAULT NULL,
    `max_event_channels_at_once` int DEFAULT NULL,
    `max_event_name_length` int DEFAULT NULL,
    `max_event_payload_in_kb` int DEFAULT NULL,
    `max_event_batch_size` int DEFAULT NULL,
    `webhooks` json,
    `enable_user_authentication` tinyint(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`),
    UNIQUE KEY `apps_key` (`key`)
);
