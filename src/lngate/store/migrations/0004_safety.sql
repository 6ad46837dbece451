-- Operational state (the withdrawal circuit breaker, the config digest) and reconciliation runs.

CREATE TABLE system_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at_ms $BIGINT NOT NULL
);

CREATE TABLE reconciliation_reports (
    seq $ID,
    at_ms $BIGINT NOT NULL,
    ok INTEGER NOT NULL,
    shortfall_msat $BIGINT NOT NULL,
    report_json TEXT NOT NULL
);
CREATE INDEX reconciliation_reports_at ON reconciliation_reports (at_ms)
