package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// IdemRecords is the contract of idempotency records: per (principal, key),
// the outcome of the first request that carried the key, so that a repeat
// is answered with it rather than run again. One mechanism uses them
// (Hub.Idempotent), for every method that changes something and for REST
// requests with an Idempotency-Key: the WebSocket and REST share one key
// space per principal.
//
// A record is pending from IdemBegin until IdemFinish stores its body (an
// opaque byte string the caller chose), or IdemAbort deletes it. It lives
// for the ttl given to IdemBegin, counted from then; an expired record is
// as if absent. principal and key are each 1 to 256 bytes.
//
// The methods use only standard types, so that a package that must not
// import hub (the store) satisfies the interface structurally.
type IdemRecords interface {
	// IdemBegin claims (principal, key) for ttl. Exactly one of concurrent
	// callers gets fresh true and a pending record started now: it runs
	// the request, then calls IdemFinish, or IdemAbort to let a retry run
	// again. Every other caller gets fresh false and the record as it
	// stands: done with the body of IdemFinish, or pending since started.
	IdemBegin(ctx context.Context, principal, key string, ttl time.Duration) (fresh, done bool, body []byte, started time.Time, err error)
	// IdemFinish stores body as the outcome of a pending record. It fails
	// when there is no live record or when it is already finished.
	IdemFinish(ctx context.Context, principal, key string, body []byte) error
	// IdemAbort deletes a pending record. A finished record is kept, and
	// that, like an absent record, is an error.
	IdemAbort(ctx context.Context, principal, key string) error
	// IdemLookup returns the live record of (principal, key) as IdemBegin
	// would, without claiming it; found is false when it is absent or
	// expired.
	IdemLookup(ctx context.Context, principal, key string) (found, done bool, body []byte, started time.Time, err error)
}

// Idempotency timing: how long a repeat waits for an in-flight first
// request, and the age after which a record still pending is taken to
// belong to a request that died with its process.
const (
	idemWait  = 10 * time.Second
	idemStale = time.Minute
)

// idemOutcome is the body of a finished record.
type idemOutcome struct {
	Fingerprint string          `json:"fp"`
	Result      json.RawMessage `json:"result,omitempty"`
	Error       *protocol.Error `json:"error,omitempty"`
}

// idempotency runs requests that carry a key through the records.
type idempotency struct {
	records IdemRecords      // set once in New
	ttl     time.Duration    // set once in New
	now     func() time.Time // set once in New
	log     *slog.Logger     // set once in New
	metrics idemMetrics      // set once in New
	// waiting, when set (tests), is called as a repeat starts waiting for
	// its in-flight first request.
	waiting func(principal, key string)
}

// Fingerprint names a request for its idempotency record: the operation and
// its canonical params. A repeat of a key with another fingerprint is
// refused with conflict.
func Fingerprint(operation string, params []byte) string {
	h := sha256.New()
	h.Write([]byte(operation))
	h.Write([]byte{0})
	h.Write(params)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Idempotent runs run at most once per (principal, key) within the records'
// ttl (Config.IdemTTL) and answers every repeat with the first outcome,
// result or error, byte for byte. A repeat while the first request runs
// waits for it (up to 10 s, then conflict, retryable); a record left pending
// for a minute by a request that died with its process is taken over. A
// repeat with another fingerprint is refused with conflict. Errors worth
// retrying (protocol.Error.Retryable) are not remembered: a retry runs
// again. key must be non-empty; the caller checks its length.
func (h *Hub) Idempotent(ctx context.Context, principal, key, fingerprint string, run func() (json.RawMessage, error)) (json.RawMessage, error) {
	return h.idem.do(ctx, principal, key, fingerprint, false, run)
}

// do is Idempotent; keepTimeout remembers timeout errors too, for a request
// whose target may have run although the caller stopped waiting (rpc.call).
func (ix *idempotency) do(ctx context.Context, principal, key, fp string, keepTimeout bool, run func() (json.RawMessage, error)) (json.RawMessage, error) {
	for attempt := 0; ; attempt++ {
		fresh, done, body, started, err := ix.records.IdemBegin(ctx, principal, key, ix.ttl)
		if err != nil {
			return nil, fmt.Errorf("idempotency begin: %w", err)
		}
		if fresh {
			if attempt > 0 {
				ix.metrics.takeovers.Inc()
			}
			break
		}
		if !done {
			ix.metrics.waited.Inc()
			done, body, err = ix.await(ctx, principal, key, started)
			if err != nil {
				return nil, err
			}
		}
		if done {
			return ix.replay(body, fp)
		}
		// Still pending after idemStale: its request died; take over once.
		if attempt > 0 {
			return nil, errInProgress()
		}
		// An abort that fails (finished or gone meanwhile) is settled by
		// the next IdemBegin.
		_ = ix.records.IdemAbort(context.WithoutCancel(ctx), principal, key)
	}

	ix.metrics.first.Inc()
	res, err := run()
	bg := context.WithoutCancel(ctx)
	out := idemOutcome{Fingerprint: fp, Result: res}
	if err != nil {
		pe := protocol.AsError(err)
		if pe.Retryable && !(keepTimeout && pe.Code == protocol.CodeTimeout) {
			if aerr := ix.records.IdemAbort(bg, principal, key); aerr != nil {
				ix.log.Warn("idempotency abort failed", "err", aerr)
			}
			return nil, err
		}
		out.Error, out.Result = pe, nil
	}
	body, merr := json.Marshal(out)
	if merr == nil {
		merr = ix.records.IdemFinish(bg, principal, key, body)
	}
	if merr != nil {
		ix.log.Warn("idempotency record not stored", "err", merr)
	}
	return res, err
}

// replay answers a repeat from a finished record.
func (ix *idempotency) replay(body []byte, fp string) (json.RawMessage, error) {
	var stored idemOutcome
	if err := json.Unmarshal(body, &stored); err != nil {
		return nil, fmt.Errorf("idempotency record: %w", err)
	}
	if stored.Fingerprint != fp {
		ix.metrics.conflicts.Inc()
		return nil, protocol.Errorf(protocol.CodeConflict, "this idempotency key was used for another request")
	}
	ix.metrics.replayed.Inc()
	if stored.Error != nil {
		return nil, stored.Error
	}
	return stored.Result, nil
}

// await polls a pending record until it finishes (done), idemWait passes
// (conflict, retryable) or it turns out stale (returned still pending).
func (ix *idempotency) await(ctx context.Context, principal, key string, started time.Time) (bool, []byte, error) {
	if ix.waiting != nil {
		ix.waiting(principal, key)
	}
	deadline := ix.now().Add(idemWait)
	delay := time.Millisecond
	for {
		if ix.now().Sub(started) > idemStale {
			return false, nil, nil
		}
		if ix.now().After(deadline) {
			return false, nil, errInProgress()
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, nil, protocol.Errorf(protocol.CodeUnavailable, "request cancelled")
		case <-t.C:
		}
		delay = min(delay*2, 200*time.Millisecond)
		found, done, body, st, err := ix.records.IdemLookup(ctx, principal, key)
		if err != nil {
			return false, nil, fmt.Errorf("idempotency lookup: %w", err)
		}
		if !found {
			// Aborted (a failure worth retrying): report it like the first.
			return false, nil, protocol.Errorf(protocol.CodeUnavailable, "the first request with this idempotency key failed; retry")
		}
		if done {
			return true, body, nil
		}
		started = st
	}
}

func errInProgress() error {
	return &protocol.Error{Code: protocol.CodeConflict, Message: "a request with this idempotency key is still in progress", Retryable: true}
}

func jsonMarshal(v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(v)
}
