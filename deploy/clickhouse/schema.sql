-- ticklane audit trail, ClickHouse 18.16 and later (applied by `ticklane audit init`).
-- Statements are separated by lines holding only ';'. Times are UInt64
-- nanoseconds (18.16 has no DateTime64). Retention: drop old partitions
-- (ALTER TABLE ticklane.messages DROP PARTITION 'YYYY-MM-DD').
-- Exactly once: each sealed batch is (session, batch_first, batch_last) in
-- the rows; after an ambiguous failure the shipper asks whether the batch
-- landed before sending it again. ReplacingMergeTree by (session, seq) is the
-- backstop: read with FINAL.
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
