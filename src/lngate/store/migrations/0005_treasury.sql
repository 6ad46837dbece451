-- Treasury: imported watch-only cold addresses (each handed out once) and the sweeps to them.

CREATE TABLE cold_addresses (
    id $ID,
    address TEXT NOT NULL UNIQUE,
    network TEXT NOT NULL,
    source TEXT NOT NULL,             -- the descriptor or xpub it was derived from, or the file
    source_index $BIGINT NOT NULL,    -- derivation index, or line number in an address list
    imported_at_ms $BIGINT NOT NULL,
    purpose TEXT,                     -- NULL while free; set once when handed out
    allocated_at_ms $BIGINT,
    claim_token TEXT,                 -- the sweep worker that is sending to it
    claimed_at_ms $BIGINT,
    txid TEXT,                        -- the sweep (or channel funding) that used it
    amount_sat $BIGINT,
    channel_point TEXT,
    used_at_ms $BIGINT,
    CHECK (purpose IS NULL OR purpose IN ('sweep', 'channel_close')),
    CHECK ((purpose IS NULL) = (allocated_at_ms IS NULL)),
    CHECK (used_at_ms IS NULL OR purpose IS NOT NULL)
);
CREATE INDEX cold_addresses_free ON cold_addresses (purpose, id);

CREATE TABLE sweeps (
    seq $ID,
    txid TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL REFERENCES cold_addresses (address),
    amount_sat $BIGINT NOT NULL CHECK (amount_sat > 0),
    fee_sat $BIGINT NOT NULL CHECK (fee_sat >= 0),
    created_at_ms $BIGINT NOT NULL
);

-- Serialises cold address hand-out across processes (see store.withdrawals.take_lock).
INSERT INTO locks (name, taken) VALUES ('treasury_cold', 0)
