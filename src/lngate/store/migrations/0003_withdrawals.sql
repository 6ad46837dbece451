-- Lightning withdrawals and their lifecycle; named locks for cross-process limit checks.

CREATE TABLE withdrawals (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users (id),
    bolt11 TEXT NOT NULL,
    payment_hash TEXT NOT NULL,
    payee TEXT NOT NULL,
    destination TEXT,
    amount_msat $BIGINT NOT NULL CHECK (amount_msat > 0),
    exchange_fee_msat $BIGINT NOT NULL CHECK (exchange_fee_msat >= 0),
    fee_reserve_msat $BIGINT NOT NULL CHECK (fee_reserve_msat >= 0),
    routing_fee_msat $BIGINT,
    preimage TEXT,
    status TEXT NOT NULL,
    internal INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms $BIGINT NOT NULL,
    updated_at_ms $BIGINT NOT NULL,
    sent_at_ms $BIGINT,
    finished_at_ms $BIGINT,
    CHECK (status IN ('requested', 'review', 'approved', 'sending', 'succeeded', 'failed',
                      'rejected')),
    CHECK (routing_fee_msat IS NULL OR routing_fee_msat <= fee_reserve_msat)
);
CREATE INDEX withdrawals_user ON withdrawals (user_id, seq);
CREATE INDEX withdrawals_status ON withdrawals (status, seq);
-- One payment hash is paid at most once across all withdrawals.
CREATE UNIQUE INDEX withdrawals_active_hash ON withdrawals (payment_hash)
    WHERE status NOT IN ('failed', 'rejected');

CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    taken $BIGINT NOT NULL DEFAULT 0
);
INSERT INTO locks (name, taken) VALUES ('withdrawal_limits', 0)
