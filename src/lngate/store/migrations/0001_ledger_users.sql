-- Ledger accounts and transfers (TigerBeetle's model), users, API keys, idempotency, events, audit.
-- $ID, $BIGINT and $BLOB are replaced per dialect by lngate.store.migrate.

CREATE TABLE accounts (
    id $ID,
    code TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    flags INTEGER NOT NULL DEFAULT 0,
    debits_pending $BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted $BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending $BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted $BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    created_at_ms $BIGINT NOT NULL,
    -- a liability can never be overdrawn, whatever code writes to it
    CHECK ((flags & 1) = 0 OR debits_posted + debits_pending <= credits_posted)
);

CREATE TABLE transfers (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    debit_account_id $BIGINT NOT NULL REFERENCES accounts (id),
    credit_account_id $BIGINT NOT NULL REFERENCES accounts (id),
    amount_msat $BIGINT NOT NULL CHECK (amount_msat >= 0),
    flag TEXT NOT NULL,
    pending_id TEXT,
    hold_state TEXT,
    kind TEXT NOT NULL,
    memo TEXT NOT NULL DEFAULT '',
    created_at_ms $BIGINT NOT NULL
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit ON transfers (credit_account_id, seq);
CREATE INDEX transfers_pending ON transfers (pending_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    account_id $BIGINT NOT NULL UNIQUE REFERENCES accounts (id),
    status TEXT NOT NULL DEFAULT 'active',
    created_at_ms $BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    secret_encrypted $BLOB NOT NULL,
    created_at_ms $BIGINT NOT NULL,
    revoked_at_ms $BIGINT
);
CREATE INDEX api_keys_user ON api_keys (user_id);

-- The first successful response to (user, Idempotency-Key), written in the same transaction
-- as the money it moved.
CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    response_json TEXT NOT NULL,
    created_at_ms $BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);

-- Account events for the live stream, written with the change they describe (an outbox).
CREATE TABLE events (
    seq $ID,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created_at_ms $BIGINT NOT NULL
);
CREATE INDEX events_user ON events (user_id, seq);

-- Append-only, hash-chained: each record's hash covers the previous record's hash.
CREATE TABLE audit_log (
    seq $BIGINT PRIMARY KEY,
    at_ms $BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    details_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
-- One row that serialises appends to the chain (its update takes a row lock on PostgreSQL).
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq $BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000')
