-- Pay: merchants' orders (each with a hold invoice of our node) and their refunds.
--
-- htlc_state says what is still owed to the node for the order's invoice once the order's own
-- state has committed: 'to_settle' (the merchant is credited: settle the held HTLC) or
-- 'to_cancel' (the order is closed or paid from a balance: cancel the invoice, failing back
-- any held HTLC). The order watcher finishes both after a crash.
CREATE TABLE orders (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    merchant_user_id TEXT NOT NULL REFERENCES users (id),
    merchant_order_id TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    amount_msat $BIGINT NOT NULL,
    fee_msat $BIGINT NOT NULL,
    description TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    payment_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    htlc_state TEXT NOT NULL DEFAULT 'none',
    htlc_done_at_ms $BIGINT,
    paid_via TEXT,
    amount_paid_msat $BIGINT,
    payer_user_id TEXT REFERENCES users (id),
    paid_by_withdrawal_id TEXT,
    created_at_ms $BIGINT NOT NULL,
    expires_at_ms $BIGINT NOT NULL,
    paid_at_ms $BIGINT,
    closed_at_ms $BIGINT,
    refunded_msat $BIGINT NOT NULL DEFAULT 0,
    refunds_reserved_msat $BIGINT NOT NULL DEFAULT 0,
    redirect_url TEXT,
    metadata TEXT NOT NULL,
    UNIQUE (merchant_user_id, merchant_order_id),
    CHECK (amount_msat > 0 AND fee_msat >= 0 AND fee_msat <= amount_msat),
    CHECK (status IN ('open', 'paid', 'expired', 'cancelled', 'refunded')),
    CHECK (htlc_state IN ('none', 'to_settle', 'settled', 'to_cancel', 'cancelled', 'lost')),
    CHECK (paid_via IS NULL OR paid_via IN ('lightning', 'balance')),
    CHECK (refunded_msat >= 0 AND refunded_msat <= refunds_reserved_msat),
    CHECK (refunds_reserved_msat <= amount_msat)
);
CREATE INDEX orders_merchant ON orders (merchant_user_id, seq);
CREATE INDEX orders_status_expiry ON orders (status, expires_at_ms);
CREATE INDEX orders_htlc ON orders (htlc_state);
CREATE INDEX orders_payer ON orders (payer_user_id, paid_at_ms);

CREATE TABLE refunds (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    order_id TEXT NOT NULL REFERENCES orders (id),
    merchant_user_id TEXT NOT NULL REFERENCES users (id),
    amount_msat $BIGINT NOT NULL,
    reason TEXT NOT NULL,
    destination TEXT NOT NULL,
    status TEXT NOT NULL,
    withdrawal_id TEXT UNIQUE,
    created_at_ms $BIGINT NOT NULL,
    finished_at_ms $BIGINT,
    CHECK (amount_msat > 0),
    CHECK (status IN ('pending', 'succeeded', 'failed'))
);
CREATE INDEX refunds_order ON refunds (order_id, seq);
