-- The wallet and the console: sign-in credentials (argon2id hashes, TOTP secrets encrypted
-- under the server key) and server-side sessions (only a hash of each cookie is kept).
CREATE TABLE web_logins (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    password_hash TEXT NOT NULL,
    totp_secret_encrypted $BLOB,
    totp_pending_encrypted $BLOB,
    totp_last_step $BIGINT NOT NULL DEFAULT 0,
    failed_logins $BIGINT NOT NULL DEFAULT 0,
    locked_until_ms $BIGINT NOT NULL DEFAULT 0,
    updated_at_ms $BIGINT NOT NULL
);

CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    realm TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at_ms $BIGINT NOT NULL,
    seen_at_ms $BIGINT NOT NULL,
    expires_at_ms $BIGINT NOT NULL,
    CHECK (realm IN ('app', 'console'))
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expiry ON web_sessions (expires_at_ms);
