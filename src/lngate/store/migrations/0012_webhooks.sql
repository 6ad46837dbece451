-- Pay's webhooks: merchants' endpoints, the outbox of deliveries (written in the transaction of
-- the change it announces), and the log of every attempt.
CREATE TABLE webhook_endpoints (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    merchant_user_id TEXT NOT NULL REFERENCES users (id),
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    secret_encrypted $BLOB NOT NULL,
    status TEXT NOT NULL,
    created_at_ms $BIGINT NOT NULL,
    failing_since_ms $BIGINT,
    disabled_at_ms $BIGINT,
    CHECK (status IN ('enabled', 'disabled', 'deleted'))
);
CREATE INDEX webhook_endpoints_merchant ON webhook_endpoints (merchant_user_id, status);

CREATE TABLE webhook_deliveries (
    seq $ID,
    id TEXT NOT NULL UNIQUE,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
    message_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts $BIGINT NOT NULL DEFAULT 0,
    next_attempt_at_ms $BIGINT,
    lease_until_ms $BIGINT,
    committed_at_ms $BIGINT NOT NULL,
    delivered_at_ms $BIGINT,
    last_status_code $BIGINT,
    last_error TEXT,
    CHECK (status IN ('pending', 'succeeded', 'failed'))
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at_ms);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);

CREATE TABLE webhook_attempts (
    seq $ID,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
    attempt $BIGINT NOT NULL,
    at_ms $BIGINT NOT NULL,
    duration_ms $BIGINT NOT NULL,
    status_code $BIGINT,
    error TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, seq);
