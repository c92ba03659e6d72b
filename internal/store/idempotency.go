package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// IdempotentRequest is a creating request that carried an Idempotency-Key.
type IdempotentRequest struct {
	UserID uuid.UUID
	Key    string
	// RequestHash fingerprints the request (method, path, canonical body):
	// a key may be replayed only by the same request.
	RequestHash []byte
	// CorrelationID is the request's, kept to be logged beside a replay's.
	CorrelationID string
	// TTL is how long the key is remembered.
	TTL time.Duration
}

// StoredResponse is the response stored with a key: what a replay answers.
type StoredResponse struct {
	Status   int
	Location string
	Body     []byte
}

// IdempotencyRecord is a key claimed and answered by an earlier request.
type IdempotencyRecord struct {
	RequestHash   []byte
	CorrelationID string
	Response      StoredResponse
}

// ClaimIdempotencyKey claims req's key for the transaction q runs on, which
// must be the one that writes what the request creates, and then its
// response (SaveIdempotentResponse). It returns nil when the key is the
// transaction's: new, or expired and taken over. Otherwise it returns the
// record of the request that holds the key, for the caller to replay or
// refuse.
//
// A request holding the key in a transaction not yet committed makes the
// claim wait for it: if it commits, the claim returns its record; if it
// rolls back (it failed, and a failed request stores nothing), the claim
// takes the key. So two concurrent requests with one key create one thing.
func (q *Queries) ClaimIdempotencyKey(ctx context.Context, req IdempotentRequest) (*IdempotencyRecord, error) {
	var claimed bool
	err := q.db.QueryRow(ctx, `
		INSERT INTO idempotency_keys (user_id, key, request_hash, correlation_id, expires_at)
		VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond')
		ON CONFLICT (user_id, key) DO UPDATE
		SET request_hash = EXCLUDED.request_hash, correlation_id = EXCLUDED.correlation_id,
		    response_status = NULL, response_body = NULL, location = NULL,
		    created_at = now(), expires_at = EXCLUDED.expires_at
		WHERE idempotency_keys.expires_at <= now()
		RETURNING true`,
		req.UserID, req.Key, req.RequestHash, req.CorrelationID, req.TTL.Microseconds(),
	).Scan(&claimed)
	if err == nil {
		return nil, nil //nolint:nilnil // nil record: the key is the caller's, which is no error
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claim idempotency key: %w", userGone(err))
	}
	// The key is held and live; ON CONFLICT locked its row, so it stays as
	// read here until this transaction ends.
	rec := &IdempotencyRecord{}
	var status *int
	err = q.db.QueryRow(ctx, `
		SELECT request_hash, correlation_id, response_status, COALESCE(location, ''), response_body
		FROM idempotency_keys WHERE user_id = $1 AND key = $2`, req.UserID, req.Key,
	).Scan(&rec.RequestHash, &rec.CorrelationID, &status, &rec.Response.Location, &rec.Response.Body)
	if err != nil {
		return nil, fmt.Errorf("read idempotency key: %w", err)
	}
	if status == nil {
		// Committed rows always have their response (it is saved in the
		// claiming transaction): this one was written some other way.
		return nil, errors.New("read idempotency key: the key has no stored response")
	}
	rec.Response.Status = *status
	return rec, nil
}

// SaveIdempotentResponse stores the response of the request that claimed
// the key, in the claiming transaction.
func (q *Queries) SaveIdempotentResponse(ctx context.Context, userID uuid.UUID, key string, resp StoredResponse) error {
	tag, err := q.db.Exec(ctx, `
		UPDATE idempotency_keys SET response_status = $3, response_body = $4, location = NULLIF($5, '')
		WHERE user_id = $1 AND key = $2`, userID, key, resp.Status, resp.Body, resp.Location)
	return affectedOne(tag, err, "save the response of idempotency key")
}

// DeleteExpiredIdempotencyKeys deletes up to batch expired keys and returns
// how many it deleted. Keys being taken over by a request right now are
// skipped: that request renews them.
func (q *Queries) DeleteExpiredIdempotencyKeys(ctx context.Context, batch int) (int64, error) {
	tag, err := q.db.Exec(ctx, `
		DELETE FROM idempotency_keys k
		USING (
		    SELECT user_id, key FROM idempotency_keys
		    WHERE expires_at <= now()
		    LIMIT $1 FOR UPDATE SKIP LOCKED
		) expired
		WHERE k.user_id = expired.user_id AND k.key = expired.key`, batch)
	if err != nil {
		return 0, fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	return tag.RowsAffected(), nil
}
