-- Fixed-window request counters shared by every process (an LNURL callback per client address,
-- say): one row per (bucket, window), incremented in place. Old windows are deleted as new ones
-- start.
CREATE TABLE rate_limit_hits (
    bucket TEXT NOT NULL,
    window_start_ms $BIGINT NOT NULL,
    hits $BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start_ms)
);
CREATE INDEX rate_limit_hits_window ON rate_limit_hits (window_start_ms);
