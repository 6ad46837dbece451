-- A channel opened to a cold close address: its cooperative close (booked node -> cold once, by
-- the closing txid: close_txid, close_amount_sat, closed_at_ms) and its funding fee (booked
-- node -> on-chain fee expense once: funding_fee_sat).

ALTER TABLE cold_addresses ADD COLUMN close_txid TEXT;
ALTER TABLE cold_addresses ADD COLUMN close_amount_sat $BIGINT;
ALTER TABLE cold_addresses ADD COLUMN closed_at_ms $BIGINT;
ALTER TABLE cold_addresses ADD COLUMN funding_fee_sat $BIGINT;
CREATE INDEX cold_addresses_channel ON cold_addresses (channel_point)
