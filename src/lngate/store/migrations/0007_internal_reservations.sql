-- An internal withdrawal reserves the deposit it pays (reserved_by = the withdrawal's id) in the
-- transaction that holds the payer's funds. From then on only that withdrawal's settlement
-- closes the deposit: the invoice watcher and the expiry poll see our own cancel of the invoice
-- and leave a reserved deposit alone (an outside payment of it is still credited, once).

ALTER TABLE deposits ADD COLUMN reserved_by TEXT;
CREATE INDEX deposits_reserved_by ON deposits (reserved_by);

-- Internal withdrawals now go requested -> review | approved -> sending like any other, driven by
-- the payment worker; the old 'requested' rows of the previous design resume from 'approved'.
UPDATE deposits SET reserved_by = (
    SELECT w.id FROM withdrawals w
    WHERE w.payment_hash = deposits.payment_hash AND w.internal = 1 AND w.status = 'requested'
) WHERE status = 'open';
UPDATE withdrawals SET status = 'approved' WHERE internal = 1 AND status = 'requested';
