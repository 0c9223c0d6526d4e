package hub

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// idemCache deduplicates requests that carry an "idem" key, per principal. A
// repeat returns the first request's result, also while the first is still in
// flight (the repeat waits for it). It is bounded in entries and time: the
// oldest records are evicted first, and a record expires after ttl.
type idemCache struct {
	max int
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*idemEntry // guarded by mu
	order   []*idemEntry          // guarded by mu: by creation, for expiry and eviction
	head    int                   // guarded by mu: first live index in order
}

type idemEntry struct {
	key     string
	created time.Time
	done    chan struct{} // closed when result and err are set
	result  json.RawMessage
	err     error
}

func newIdemCache(max int, ttl time.Duration, now func() time.Time) *idemCache {
	return &idemCache{max: max, ttl: ttl, now: now, entries: make(map[string]*idemEntry)}
}

// do runs fn once per (principal, key) within the ttl and returns its result
// to every caller. Results are stored encoded, so a repeat sees exactly the
// bytes the first caller got. Errors that are worth retrying (timeout,
// unavailable, internal) are not remembered: the next repeat runs again.
func (ic *idemCache) do(ctx context.Context, principal, key string, fn func() (any, error)) (any, error) {
	k := principal + "\x00" + key
	ic.mu.Lock()
	ic.expireLocked()
	if e, ok := ic.entries[k]; ok {
		ic.mu.Unlock()
		select {
		case <-e.done:
			if e.err != nil {
				return nil, e.err
			}
			return e.result, nil
		case <-ctx.Done():
			return nil, protocol.Errorf(protocol.CodeUnavailable, "server shutting down")
		}
	}
	e := &idemEntry{key: k, created: ic.now(), done: make(chan struct{})}
	ic.entries[k] = e
	ic.order = append(ic.order, e)
	for len(ic.entries) > ic.max {
		ic.evictOldestLocked()
	}
	ic.mu.Unlock()

	res, err := fn()
	if err == nil {
		raw, merr := jsonMarshal(res)
		if merr != nil {
			err = merr
		} else {
			e.result = raw
		}
	}
	e.err = err
	if err != nil && protocol.AsError(err).Retryable {
		ic.mu.Lock()
		if ic.entries[k] == e {
			delete(ic.entries, k)
		}
		ic.mu.Unlock()
	}
	close(e.done)
	if err != nil {
		return nil, err
	}
	return e.result, nil
}

func (ic *idemCache) expireLocked() {
	cutoff := ic.now().Add(-ic.ttl)
	for ic.head < len(ic.order) && ic.order[ic.head].created.Before(cutoff) {
		ic.dropHeadLocked()
	}
	ic.compactLocked()
}

func (ic *idemCache) evictOldestLocked() {
	if ic.head < len(ic.order) {
		ic.dropHeadLocked()
	}
	ic.compactLocked()
}

func (ic *idemCache) dropHeadLocked() {
	e := ic.order[ic.head]
	ic.order[ic.head] = nil
	ic.head++
	if ic.entries[e.key] == e {
		delete(ic.entries, e.key)
	}
}

func (ic *idemCache) compactLocked() {
	if ic.head > 1024 && ic.head*2 > len(ic.order) {
		n := copy(ic.order, ic.order[ic.head:])
		clear(ic.order[n:])
		ic.order = ic.order[:n]
		ic.head = 0
	}
}

// Len returns the number of records held (for tests and metrics).
func (ic *idemCache) Len() int {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return len(ic.entries)
}

func jsonMarshal(v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok {
		return raw, nil
	}
	return json.Marshal(v)
}
