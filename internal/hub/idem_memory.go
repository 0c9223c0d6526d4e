package hub

import (
	"context"
	"errors"
	"sync"
	"time"
)

var _ IdemRecords = (*MemoryRecords)(nil)

// Errors of MemoryRecords.
var (
	errIdemNotFound = errors.New("idempotency record not found")
	errIdemFinished = errors.New("idempotency record already finished")
)

// MemoryRecords are IdemRecords in this process's memory, for one node
// whose records need not survive a restart. They are bounded in entries:
// past max, the oldest records are dropped first (a repeat of a dropped key
// runs again). Expired records are dropped as new ones are claimed.
type MemoryRecords struct {
	max int              // set once
	now func() time.Time // set once

	mu      sync.Mutex
	entries map[string]*memRecord // guarded by mu
	order   []*memRecord          // guarded by mu: by creation, for expiry and eviction
	head    int                   // guarded by mu: first live index in order
}

type memRecord struct {
	key     string // principal + "\x00" + key
	started time.Time
	expires time.Time
	done    bool
	body    []byte
}

// NewMemoryRecords returns records holding at most max entries, on the clock
// now (time.Now when nil).
func NewMemoryRecords(max int, now func() time.Time) *MemoryRecords {
	if now == nil {
		now = time.Now
	}
	return &MemoryRecords{max: max, now: now, entries: make(map[string]*memRecord)}
}

// IdemBegin implements IdemRecords.
func (m *MemoryRecords) IdemBegin(ctx context.Context, principal, key string, ttl time.Duration) (bool, bool, []byte, time.Time, error) {
	if err := checkIdem(principal, key); err != nil {
		return false, false, nil, time.Time{}, err
	}
	k := principal + "\x00" + key
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	if e := m.entries[k]; e != nil && now.Before(e.expires) {
		return false, e.done, e.body, e.started, nil
	}
	e := &memRecord{key: k, started: now, expires: now.Add(ttl)}
	m.entries[k] = e
	m.order = append(m.order, e)
	// Bounded in entries, and in slots of order that aborted records left.
	for (len(m.entries) > m.max || len(m.order)-m.head > 2*m.max) && m.head < len(m.order) {
		m.dropHeadLocked()
	}
	m.compactLocked()
	return true, false, nil, now, nil
}

// IdemFinish implements IdemRecords.
func (m *MemoryRecords) IdemFinish(ctx context.Context, principal, key string, body []byte) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[principal+"\x00"+key]
	switch {
	case e == nil || !now.Before(e.expires):
		return errIdemNotFound
	case e.done:
		return errIdemFinished
	}
	e.done, e.body = true, append([]byte(nil), body...)
	return nil
}

// IdemAbort implements IdemRecords.
func (m *MemoryRecords) IdemAbort(ctx context.Context, principal, key string) error {
	k := principal + "\x00" + key
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[k]
	switch {
	case e == nil:
		return errIdemNotFound
	case e.done:
		return errIdemFinished
	}
	delete(m.entries, k) // its slot in order is skipped when dropped
	return nil
}

// IdemLookup implements IdemRecords.
func (m *MemoryRecords) IdemLookup(ctx context.Context, principal, key string) (bool, bool, []byte, time.Time, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[principal+"\x00"+key]
	if e == nil || !now.Before(e.expires) {
		return false, false, nil, time.Time{}, nil
	}
	return true, e.done, e.body, e.started, nil
}

// rawLookup returns the body of the finished live record k (principal and
// key already joined), for a caller that keeps its own key space
// (MemoryBroker's publication records).
func (m *MemoryRecords) rawLookup(k string, now time.Time) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[k]
	if e == nil || !e.done || !now.Before(e.expires) {
		return nil, false
	}
	return e.body, true
}

// rawStore records k as finished with body for ttl from now, replacing
// any record of k.
func (m *MemoryRecords) rawStore(k string, body []byte, now time.Time, ttl time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	e := &memRecord{key: k, started: now, expires: now.Add(ttl), done: true, body: body}
	m.entries[k] = e
	m.order = append(m.order, e)
	for (len(m.entries) > m.max || len(m.order)-m.head > 2*m.max) && m.head < len(m.order) {
		m.dropHeadLocked()
	}
	m.compactLocked()
}

// Len returns the number of records held (for tests).
func (m *MemoryRecords) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// expireLocked drops the records, oldest first, whose ttl has passed. A
// record with a shorter ttl than an older one waits for it: IdemLookup and
// IdemBegin check expiry themselves.
func (m *MemoryRecords) expireLocked(now time.Time) {
	for m.head < len(m.order) && !now.Before(m.order[m.head].expires) {
		m.dropHeadLocked()
	}
}

func (m *MemoryRecords) dropHeadLocked() {
	e := m.order[m.head]
	m.order[m.head] = nil
	m.head++
	if m.entries[e.key] == e {
		delete(m.entries, e.key)
	}
}

func (m *MemoryRecords) compactLocked() {
	if m.head > 1024 && m.head*2 > len(m.order) {
		n := copy(m.order, m.order[m.head:])
		clear(m.order[n:])
		m.order = m.order[:n]
		m.head = 0
	}
}

const maxIdemBytes = 256

func checkIdem(principal, key string) error {
	if principal == "" || key == "" || len(principal) > maxIdemBytes || len(key) > maxIdemBytes {
		return errors.New("idempotency principal and key must be 1..256 bytes")
	}
	return nil
}
