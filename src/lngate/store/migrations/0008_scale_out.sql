-- Shared state for several API processes: the replay guard. A request signature is inserted the
-- first time it is seen (the primary key refuses the second, in whichever process it arrives)
-- and forgotten after expires_at_ms, when the timestamp check refuses it anyway.

CREATE TABLE replay_guard (
    signature $BLOB PRIMARY KEY,
    expires_at_ms $BIGINT NOT NULL
);
CREATE INDEX replay_guard_expiry ON replay_guard (expires_at_ms)
