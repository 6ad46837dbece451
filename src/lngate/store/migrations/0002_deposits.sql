-- Lightning deposits (invoices of our node, one per deposit) and worker cursors.

CREATE TABLE deposits (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id),
    payment_hash TEXT NOT NULL UNIQUE,
    bolt11 TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount_msat $BIGINT,
    amount_paid_msat $BIGINT,
    memo TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms $BIGINT NOT NULL,
    expires_at_ms $BIGINT NOT NULL,
    settled_at_ms $BIGINT,
    CHECK (amount_msat IS NULL OR amount_msat > 0),
    CHECK (status IN ('open', 'settled', 'expired', 'cancelled'))
);
CREATE INDEX deposits_user ON deposits (user_id, seq);
CREATE INDEX deposits_status_expiry ON deposits (status, expires_at_ms);

-- Settled invoices of our node that match no deposit: kept for an operator, never lost.
CREATE TABLE unmatched_payments (
    payment_hash TEXT PRIMARY KEY,
    amount_paid_msat $BIGINT NOT NULL,
    settle_index $BIGINT NOT NULL,
    seen_at_ms $BIGINT NOT NULL
);

-- Where each long-running worker resumes (e.g. the invoice stream's settle index).
CREATE TABLE worker_cursors (
    name TEXT PRIMARY KEY,
    value $BIGINT NOT NULL
)
