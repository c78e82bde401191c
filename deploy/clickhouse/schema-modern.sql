-- ticklane audit trail, ClickHouse 22 and later (applied by `ticklane audit init`
-- when the server's version() is 22 or more; 18.16 gets schema.sql).
-- The same tables, columns and types as schema.sql (the rows are validated
-- against them), plus non_replicated_deduplication_window: the shipper
-- inserts each sealed batch with insert_deduplication_token = its id and
-- async_insert = 0, so a batch sent again (after an ambiguous failure, or a
-- crash before its acknowledgement was written) lands once. The batch id stays
-- in the rows and ReplacingMergeTree by (session, seq) stays the backstop:
-- queries are the same on both (they read with FINAL). Statements are
-- separated by lines holding only ';'. Retention: drop old partitions.
CREATE DATABASE IF NOT EXISTS ticklane
;
CREATE TABLE IF NOT EXISTS ticklane.messages (
    day Date,
    session String,
    seq UInt64,
    journaled_ns UInt64,
    timestamp UInt64,
    type String,
    stock_locate UInt16,
    stock String,
    order_reference UInt64,
    side String,
    shares UInt64,
    price UInt64,
    match_number UInt64,
    raw String,
    batch_first UInt64,
    batch_last UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY day
ORDER BY (session, seq)
SETTINGS non_replicated_deduplication_window = 10000
;
CREATE TABLE IF NOT EXISTS ticklane.gaps (
    day Date,
    session String,
    from_seq UInt64,
    end_seq UInt64,
    journaled_ns UInt64
) ENGINE = ReplacingMergeTree()
PARTITION BY day
ORDER BY (session, from_seq, end_seq)
SETTINGS non_replicated_deduplication_window = 10000
;
-- The sealed batches, as the rows carry them (no insert of their own).
CREATE VIEW IF NOT EXISTS ticklane.batches AS
SELECT session, batch_first AS first_seq, batch_last AS last_seq, count() AS rows,
       min(journaled_ns) AS first_journaled_ns, max(journaled_ns) AS last_journaled_ns
FROM ticklane.messages FINAL
GROUP BY session, batch_first, batch_last
;
CREATE VIEW IF NOT EXISTS ticklane.sessions AS
SELECT session, min(seq) AS first_seq, max(seq) AS last_seq, count() AS messages
FROM ticklane.messages FINAL
GROUP BY session
