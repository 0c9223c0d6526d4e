package apps

import (
	"sync"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// The record of output outcomes (docs/apps.md, "Outputs"): each device's
// most recent terminal outcomes, for the admin API
// (GET /api/v1/admin/devices/{deviceId}/outputs). In memory, per node (the
// node the device declared its surfaces on), not persisted: a restart
// forgets it.

// Bounds of the record: at most outcomesPerDevice outcomes for each of the
// last outcomeDevices devices that had one. An outcome is a few hundred
// bytes (no content is kept), so the record stays under ~20 MB.
const (
	outcomesPerDevice = 50
	outcomeDevices    = 1024
)

// outcomeLog is the record. Safe for concurrent use; its mutex is a leaf.
type outcomeLog struct {
	per, max int // set once at construction

	mu   sync.Mutex
	devs map[string]*outcomeRing // guarded by mu
	seq  uint64                  // guarded by mu: write order, for eviction
}

// outcomeRing is one device's outcomes: buf is oldest first from start
// once full.
type outcomeRing struct {
	buf     []protocol.OutputOutcome
	start   int
	lastSeq uint64
}

func newOutcomeLog(per, max int) *outcomeLog {
	return &outcomeLog{per: per, max: max, devs: map[string]*outcomeRing{}}
}

// add records one terminal outcome of device.
func (l *outcomeLog) add(device string, o protocol.OutputOutcome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.devs[device]
	if r == nil {
		if len(l.devs) >= l.max {
			l.evictLocked()
		}
		r = &outcomeRing{}
		l.devs[device] = r
	}
	l.seq++
	r.lastSeq = l.seq
	if len(r.buf) < l.per {
		r.buf = append(r.buf, o)
		return
	}
	r.buf[r.start] = o
	r.start = (r.start + 1) % len(r.buf)
}

// evictLocked forgets the device written least recently.
func (l *outcomeLog) evictLocked() {
	var oldest string
	var seq uint64
	for k, r := range l.devs {
		if oldest == "" || r.lastSeq < seq {
			oldest, seq = k, r.lastSeq
		}
	}
	delete(l.devs, oldest)
}

// ended notes when and why a shown request left the device for good (its
// last hidden event). A request whose outcome was forgotten is ignored.
func (l *outcomeLog) ended(device, session, request string, at time.Time, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.devs[device]
	if r == nil {
		return
	}
	for i := range r.buf {
		// Newest first: the latest shown request with this id is the one
		// that ended (a rejected duplicate of it may be newer).
		o := &r.buf[(r.start+len(r.buf)-1-i)%len(r.buf)]
		if o.SessionID == session && o.RequestID == request && o.Outcome == "shown" && o.EndedAt == nil {
			// A new pointer, never a write through the old one: list hands
			// out copies that share it.
			t := at
			o.EndedAt, o.EndReason = &t, reason
			return
		}
	}
}

// list returns device's outcomes, newest first, at most limit (<= 0: all
// kept).
func (l *outcomeLog) list(device string, limit int) []protocol.OutputOutcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.devs[device]
	out := []protocol.OutputOutcome{}
	if r == nil {
		return out
	}
	for i := range r.buf {
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, r.buf[(r.start+len(r.buf)-1-i)%len(r.buf)])
	}
	return out
}
