package hub

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// TestAdmitExact: racing handshakes never admit more than MaxConnections in
// all or MaxConnectionsPerUser for one user, and releases give slots back.
func TestAdmitExact(t *testing.T) {
	h := &Hub{cfg: Config{MaxConnections: 10, MaxConnectionsPerUser: 4}}
	h.reg.init()
	var admitted, perUser, overall atomic.Int64
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &auth.Principal{UserID: "u" + strconv.Itoa(i%4)}
			err := h.admit(t.Context(), p)
			var le *ConnLimitError
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.As(err, &le) && le.Limit == LimitUserConnections && le.Err.Code == protocol.CodeRateLimited:
				perUser.Add(1)
			case errors.As(err, &le) && le.Limit == LimitConnections && le.Err.Code == protocol.CodeUnavailable:
				overall.Add(1)
			default:
				t.Errorf("admit: %v", err)
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 10 || h.slots.total.Load() != 10 {
		t.Fatalf("admitted %d (counted %d), want 10", admitted.Load(), h.slots.total.Load())
	}
	for u, n := range h.ownerCounts() {
		if n > 4 {
			t.Fatalf("user %s holds %d, want at most 4", u, n)
		}
	}
	for i := range 4 {
		p := &auth.Principal{UserID: "u" + strconv.Itoa(i)}
		for h.reg.admittedOf(p.UserID) > 0 {
			h.release(p)
		}
	}
	if h.slots.total.Load() != 0 || len(h.ownerCounts()) != 0 {
		t.Fatalf("after releasing everything: total %d, users %v", h.slots.total.Load(), h.ownerCounts())
	}
	for i := range h.reg.shards {
		if n := len(h.reg.shards[i].users); n != 0 {
			t.Fatalf("after releasing everything: %d users left in registry shard %d, want 0", n, i)
		}
	}
	// Disabled (negative): no count refuses.
	h = &Hub{cfg: Config{MaxConnections: -1, MaxConnectionsPerUser: -1}}
	h.reg.init()
	for range 100 {
		if err := h.admit(t.Context(), &auth.Principal{UserID: "u"}); err != nil {
			t.Fatalf("disabled limits refused: %v", err)
		}
	}
}
