package httpx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/jackc/pgx/v5"

	"github.com/backtestd/backtestd/internal/enqueue"
	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/store"
)

// Idempotency headers (Stripe's): a client names a creating request with a
// key of its choosing; a replay of it is answered with the first response,
// marked as replayed.
const (
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// MaxIdempotencyKeyLength is the longest Idempotency-Key, in characters
// (printable ASCII, so bytes too): room for a UUID and a client's prefix.
const MaxIdempotencyKeyLength = 255

// idempotency is a creating request that carried an Idempotency-Key: it
// claims the key inside the transaction that creates, stores the response
// there, and answers, or replays what an earlier request with the key was
// answered.
type idempotency struct {
	logger *slog.Logger
	req    store.IdempotentRequest
	// response is the answer to write once the transaction committed: the
	// request's own, saved with the key, or the one replayed.
	response store.StoredResponse
	// original is the correlation ID of the request replayed.
	original string
}

// errReplay ends the transaction of a request whose key an earlier request
// holds with the same body: nothing is created, the stored response is
// replayed.
var errReplay = errors.New("the idempotency key was used by an earlier request: replay its response")

// errKeyReused ends the transaction of a request whose key an earlier
// request holds with another body.
var errKeyReused = errors.New("the idempotency key was used by an earlier request with another body")

// newIdempotency reads the request's Idempotency-Key. Without one it
// returns nil and true: the request is handled as usual. A key that breaks
// the rules (sent twice, empty, longer than MaxIdempotencyKeyLength, or not
// printable ASCII) is answered 400 and it returns false. body is the
// decoded request: its canonical JSON, with the method and path, is what a
// replay must match.
func newIdempotency(w http.ResponseWriter, r *http.Request, logger *slog.Logger, ttl time.Duration, body any) (*idempotency, bool) {
	values := r.Header.Values(HeaderIdempotencyKey)
	if len(values) == 0 {
		return nil, true
	}
	const reason = "must be sent once, 1 to 255 printable ASCII characters"
	if len(values) > 1 || !validIdempotencyKey(values[0]) {
		writeProblem(w, r, http.StatusBadRequest, "The Idempotency-Key header "+reason+".",
			InvalidParam{Name: HeaderIdempotencyKey, Reason: reason})
		return nil, false
	}
	hash, err := requestHash(r.Method, r.URL.Path, body)
	if err != nil {
		serverError(logger, w, r, err)
		return nil, false
	}
	return &idempotency{logger: logger, req: store.IdempotentRequest{
		UserID: userFrom(r.Context()).ID, Key: values[0], RequestHash: hash,
		CorrelationID: obs.CorrelationID(r.Context()), TTL: ttl,
	}}, true
}

// validIdempotencyKey reports whether key is 1 to MaxIdempotencyKeyLength
// printable ASCII characters (space to tilde): what a client can retype,
// log and send through any proxy unchanged.
func validIdempotencyKey(key string) bool {
	if key == "" || len(key) > MaxIdempotencyKeyLength {
		return false
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// requestHash fingerprints a request: its method, its path and the
// canonical JSON (RFC 8785: sorted names, one spelling per number) of its
// decoded body, so that a retry that spells the same body differently
// still matches, and a request to another endpoint never does.
func requestHash(method, path string, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("hash the request: %w", err)
	}
	v := jsontext.Value(b)
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("hash the request: %w", err)
	}
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "%s %s\n", method, path)
	_, _ = h.Write(v)
	return h.Sum(nil), nil
}

// claim claims the key in tx, the transaction that creates, before it
// writes anything. It returns errReplay or errKeyReused when an earlier
// request holds the key; either rolls the transaction back.
func (i *idempotency) claim(ctx context.Context, tx pgx.Tx) error {
	held, err := store.New(tx).ClaimIdempotencyKey(ctx, i.req)
	switch {
	case err != nil:
		return err
	case held == nil:
		return nil
	case !bytes.Equal(held.RequestHash, i.req.RequestHash):
		return errKeyReused
	default:
		i.response, i.original = held.Response, held.CorrelationID
		return errReplay
	}
}

// save stores the response with the key, in the claiming transaction, and
// keeps it to be written once that commits: the first answer and every
// replay are the same bytes.
func (i *idempotency) save(ctx context.Context, tx pgx.Tx, status int, location string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode the response: %w", err)
	}
	i.response = store.StoredResponse{Status: status, Location: location, Body: append(body, '\n')}
	return store.New(tx).SaveIdempotentResponse(ctx, i.req.UserID, i.req.Key, i.response)
}

// errNotHeld rolls back the claim of a request refused all the same: it
// claimed the key only to learn whether an earlier request holds it.
var errNotHeld = errors.New("no earlier request holds the idempotency key")

// held returns errReplay or errKeyReused, for answered, when an earlier
// request holds the key, and nil when none does. A request about to be
// refused for what the database holds now (a strategy deleted since the
// request first succeeded) asks first: the stored response wins over an
// answer the database would now give. It claims the key as the creating
// transaction does, waiting as that does for a request with the key in
// flight, and rolls the claim back: a refusal stores nothing.
func (i *idempotency) held(ctx context.Context, q *store.Queries) error {
	if i == nil {
		return nil
	}
	err := q.InTx(ctx, func(tx pgx.Tx) error {
		if err := i.claim(ctx, tx); err != nil {
			return err
		}
		return errNotHeld
	})
	if errors.Is(err, errNotHeld) {
		return nil
	}
	return err
}

// answered writes the response when err is the outcome of a replay or of a
// reused key, and reports whether it did.
func (i *idempotency) answered(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case i == nil:
		return false
	case errors.Is(err, errReplay):
		i.logger.InfoContext(r.Context(), obs.EventIdempotentReplay,
			slog.String(obs.KeyOriginalCorrID, i.original),
			slog.Int(obs.KeyStatusCode, i.response.Status))
		w.Header().Set(HeaderIdempotentReplayed, "true")
		i.write(w)
		return true
	case errors.Is(err, errKeyReused):
		writeKindProblem(w, r, ProblemIdempotencyKeyReused, "This Idempotency-Key was used with another request "+
			"(another body or endpoint); use a new key for a new request.")
		return true
	default:
		return false
	}
}

// write writes the stored response, as writeJSON would have.
func (i *idempotency) write(w http.ResponseWriter) {
	if i.response.Location != "" {
		w.Header().Set("Location", i.response.Location)
	}
	writeBody(w, "application/json", i.response.Status, i.response.Body)
}

// writeCreated answers a request that created something: with the response
// saved under its Idempotency-Key when it had one, byte for byte what a
// replay gets, else with the rendered one.
func writeCreated(w http.ResponseWriter, idem *idempotency, status int, location string, body any) {
	if idem != nil {
		idem.write(w)
		return
	}
	w.Header().Set("Location", location)
	writeJSON(w, "application/json", status, body)
}

// txHook is the enqueue's hook of a request with an Idempotency-Key,
// render writing the response from what was created; nil without a key.
// It is where a request without a key is told apart: claim and save take
// the key as given.
func txHook[T any](idem *idempotency, render func(T) (status int, location string, body any)) enqueue.TxHook[T] {
	if idem == nil {
		return nil
	}
	return idempotentHook[T]{idem: idem, render: render}
}

// idempotentHook runs an idempotent POST inside the transaction of what it
// creates (a run, a sweep): the key is claimed before anything is locked or
// written, and the response, rendered from what was created, saved with it.
type idempotentHook[T any] struct {
	idem   *idempotency
	render func(T) (status int, location string, body any)
}

func (h idempotentHook[T]) Before(ctx context.Context, tx pgx.Tx) error { return h.idem.claim(ctx, tx) }

func (h idempotentHook[T]) After(ctx context.Context, tx pgx.Tx, created T) error {
	status, location, body := h.render(created)
	return h.idem.save(ctx, tx, status, location, body)
}
