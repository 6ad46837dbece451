-- Admin keys are operators, not account holders: a transfer to an admin's name is to an unknown
-- user (services.accounts.require_user), here as in Python. Only the recipient lookup changes.

CREATE OR REPLACE FUNCTION lngate_transfer_one(
    p_sender_id text, p_to text, p_amount_msat bigint, p_memo text, p_key text,
    p_request_hash text, p_now_ms bigint, p_created_at text,
    p_amount_max_msat bigint, p_total_max_msat bigint,
    OUT outcome text, OUT body text
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_stored record;
    v_sender record;
    v_recipient record;
    v_existing record;
    v_transfer_id text;
    v_receipt text;
    v_moved boolean := false;
    v_debit record;
    v_sent_seq bigint;
    v_received_seq bigint;
BEGIN
    -- services.idempotent.run_once: a stored answer for the key is the answer
    SELECT request_hash, response_json INTO v_stored
    FROM idempotency_keys WHERE user_id = p_sender_id AND key = p_key;
    IF FOUND THEN
        IF v_stored.request_hash = p_request_hash THEN
            outcome := 'replayed'; body := v_stored.response_json;
        ELSE
            outcome := 'idempotency_conflict';
        END IF;
        RETURN;
    END IF;
    -- services.transfers.transfer_op: who may send to whom
    SELECT id, username, account_id, status INTO v_sender FROM users WHERE id = p_sender_id;
    IF NOT FOUND THEN outcome := 'sender_not_found'; RETURN; END IF;
    IF v_sender.status = 'frozen' THEN outcome := 'sender_frozen'; RETURN; END IF;
    SELECT id, username, account_id, status INTO v_recipient FROM users
    WHERE username = p_to AND role <> 'admin';
    IF NOT FOUND THEN outcome := 'unknown_user'; RETURN; END IF;
    IF v_recipient.id = v_sender.id THEN outcome := 'self_transfer'; RETURN; END IF;
    IF v_recipient.status = 'frozen' THEN outcome := 'recipient_frozen'; RETURN; END IF;
    v_transfer_id := 'xfer:' || v_sender.id || ':' || p_key;
    -- the receipt, as services.transfers builds it (orjson's compact form)
    v_receipt := '{"id":' || to_json(v_transfer_id)::text
        || ',"from":' || to_json(v_sender.username)::text
        || ',"to":' || to_json(v_recipient.username)::text
        || ',"amount_msat":' || p_amount_msat::text
        || ',"memo":' || to_json(p_memo)::text
        || ',"status":"completed","created_at":' || to_json(p_created_at)::text || '}';

    -- store.ledger.apply_transfer: a replayed id, then the shape, then the move
    SELECT debit_account_id, credit_account_id, amount_msat, flag, pending_id INTO v_existing
    FROM transfers WHERE id = v_transfer_id;
    IF FOUND THEN
        IF NOT (v_existing.debit_account_id = v_sender.account_id
                AND v_existing.credit_account_id = v_recipient.account_id
                AND v_existing.amount_msat = p_amount_msat
                AND v_existing.flag = 'single' AND v_existing.pending_id IS NULL) THEN
            outcome := 'exists_with_different_fields'; RETURN;
        END IF;
        -- exists: nothing moves again, the receipt is stored below
    ELSE
        IF p_amount_msat <= 0 THEN outcome := 'amount_must_be_positive'; RETURN; END IF;
        IF p_amount_msat > p_amount_max_msat THEN outcome := 'amount_too_large'; RETURN; END IF;
        IF v_sender.account_id = v_recipient.account_id THEN
            outcome := 'accounts_must_be_different'; RETURN;
        END IF;
        -- the no-overdraft rule and the overflow bound, checked and applied in one statement
        UPDATE accounts SET debits_posted = debits_posted + p_amount_msat
        WHERE id = v_sender.account_id
          AND ((flags & 1) = 0 OR debits_posted + debits_pending + p_amount_msat <= credits_posted)
          AND debits_posted + debits_pending + p_amount_msat <= p_total_max_msat;
        IF NOT FOUND THEN
            SELECT flags, debits_posted + debits_pending + p_amount_msat <= credits_posted AS covered
            INTO v_debit FROM accounts WHERE id = v_sender.account_id;
            IF NOT FOUND THEN
                outcome := 'debit_account_not_found';
            ELSIF (v_debit.flags & 1) <> 0 AND NOT v_debit.covered THEN
                outcome := 'exceeds_credits';
            ELSE
                outcome := 'overflows';
            END IF;
            RETURN;
        END IF;
        UPDATE accounts SET credits_posted = credits_posted + p_amount_msat
        WHERE id = v_recipient.account_id
          AND credits_posted + credits_pending + p_amount_msat <= p_total_max_msat;
        IF NOT FOUND THEN
            UPDATE accounts SET debits_posted = debits_posted - p_amount_msat
            WHERE id = v_sender.account_id;
            PERFORM 1 FROM accounts WHERE id = v_recipient.account_id;
            outcome := CASE WHEN FOUND THEN 'overflows' ELSE 'credit_account_not_found' END;
            RETURN;
        END IF;
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_msat, flag,
                               pending_id, hold_state, kind, memo, created_at_ms)
        VALUES (v_transfer_id, v_sender.account_id, v_recipient.account_id, p_amount_msat,
                'single', NULL, NULL, 'transfer', p_memo, p_now_ms)
        ON CONFLICT (id) DO NOTHING;
        IF FOUND THEN
            v_moved := true;
        ELSE
            -- another process committed this id since our check: undo, and answer as a replay
            UPDATE accounts SET debits_posted = debits_posted - p_amount_msat
            WHERE id = v_sender.account_id;
            UPDATE accounts SET credits_posted = credits_posted - p_amount_msat
            WHERE id = v_recipient.account_id;
            SELECT debit_account_id, credit_account_id, amount_msat, flag, pending_id
            INTO v_existing FROM transfers WHERE id = v_transfer_id;
            IF NOT (v_existing.debit_account_id = v_sender.account_id
                    AND v_existing.credit_account_id = v_recipient.account_id
                    AND v_existing.amount_msat = p_amount_msat
                    AND v_existing.flag = 'single' AND v_existing.pending_id IS NULL) THEN
                outcome := 'exists_with_different_fields'; RETURN;
            END IF;
        END IF;
    END IF;

    IF v_moved THEN
        v_sent_seq := lngate_append_event(v_sender.id, 'transfer.sent', v_receipt, p_now_ms);
        v_received_seq := lngate_append_event(
            v_recipient.id, 'transfer.received', v_receipt, p_now_ms);
    END IF;
    INSERT INTO idempotency_keys
        (user_id, key, request_hash, status_code, response_json, created_at_ms)
    VALUES (p_sender_id, p_key, p_request_hash, 201, v_receipt, p_now_ms)
    ON CONFLICT (user_id, key) DO NOTHING;
    IF NOT FOUND THEN
        -- another request with this key (another process) committed first: undo, its answer
        -- stands
        IF v_moved THEN
            DELETE FROM events WHERE seq IN (v_sent_seq, v_received_seq);
            DELETE FROM transfers WHERE id = v_transfer_id;
            UPDATE accounts SET debits_posted = debits_posted - p_amount_msat
            WHERE id = v_sender.account_id;
            UPDATE accounts SET credits_posted = credits_posted - p_amount_msat
            WHERE id = v_recipient.account_id;
        END IF;
        SELECT request_hash, response_json INTO v_stored
        FROM idempotency_keys WHERE user_id = p_sender_id AND key = p_key;
        IF NOT FOUND THEN  -- the key was there a moment ago: let the writer run this alone
            RAISE unique_violation USING MESSAGE = 'idempotency key vanished: ' || p_key;
        END IF;
        IF v_stored.request_hash = p_request_hash THEN
            outcome := 'replayed'; body := v_stored.response_json;
        ELSE
            outcome := 'idempotency_conflict';
        END IF;
        RETURN;
    END IF;
    outcome := 'ok';
    body := v_receipt;
END
$fn$;
