package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

func newTestIdem(max int, ttl time.Duration, now func() time.Time) (*idempotency, *MemoryRecords) {
	rec := NewMemoryRecords(max, now)
	return &idempotency{records: rec, ttl: ttl, now: now, log: slog.New(slog.DiscardHandler), metrics: newIdemMetrics(nil)}, rec
}

func TestIdempotency(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	ctx := context.Background()
	do := func(ix *idempotency, principal, key string, fn func() (any, error)) (json.RawMessage, error) {
		return ix.do(ctx, principal, key, "fp", false, func() (json.RawMessage, error) {
			v, err := fn()
			if err != nil {
				return nil, err
			}
			return jsonMarshal(v)
		})
	}

	t.Run("repeat returns the first result", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		runs := 0
		fn := func() (any, error) { runs++; return map[string]int{"n": runs}, nil }
		a, _ := do(ix, "p", "k", fn)
		b, _ := do(ix, "p", "k", fn)
		if string(a) != `{"n":1}` {
			t.Errorf("first: got %s", a)
		}
		if string(b) != `{"n":1}` || runs != 1 {
			t.Errorf("repeat: got %s after %d runs, want the first result after 1 run", b, runs)
		}
	})
	t.Run("keys are per principal", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		var runs int
		fn := func() (any, error) { runs++; return runs, nil }
		do(ix, "p1", "k", fn)
		do(ix, "p2", "k", fn)
		if runs != 2 {
			t.Errorf("runs: got %d, want 2", runs)
		}
	})
	t.Run("another fingerprint is a conflict", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		runs := 0
		run := func() (json.RawMessage, error) { runs++; return json.RawMessage(`1`), nil }
		if _, err := ix.do(ctx, "p", "k", Fingerprint("m", []byte(`{"a":1}`)), false, run); err != nil {
			t.Fatal(err)
		}
		_, err := ix.do(ctx, "p", "k", Fingerprint("m", []byte(`{"a":2}`)), false, run)
		if pe := protocol.AsError(err); pe.Code != protocol.CodeConflict || pe.Retryable || runs != 1 {
			t.Errorf("other params: got %v (retryable %v) after %d runs, want a final conflict after 1", err, pe.Retryable, runs)
		}
		_, err = ix.do(ctx, "p", "k", Fingerprint("n", []byte(`{"a":1}`)), false, run)
		if pe := protocol.AsError(err); pe.Code != protocol.CodeConflict || runs != 1 {
			t.Errorf("other operation: got %v after %d runs, want conflict after 1", err, runs)
		}
	})
	t.Run("in-flight duplicates wait", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, time.Now)
		var waiting sync.WaitGroup
		waiting.Add(4)
		ix.waiting = func(string, string) { waiting.Done() }
		var runs atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		results := make([]string, 5)
		for i := range 5 {
			wg.Go(func() {
				r, err := do(ix, "p", "k", func() (any, error) {
					runs.Add(1)
					<-release
					return "done", nil
				})
				if err != nil {
					t.Error(err)
				}
				results[i] = string(r)
			})
		}
		// The first request is held until the four repeats wait for it.
		waiting.Wait()
		close(release)
		wg.Wait()
		if runs.Load() != 1 {
			t.Errorf("runs: got %d, want 1", runs.Load())
		}
		for i, r := range results {
			if r != `"done"` {
				t.Errorf("caller %d: got %s", i, r)
			}
		}
	})
	t.Run("a repeat waiting for a first that fails worth retrying is told to retry", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, time.Now)
		waiting := make(chan struct{})
		ix.waiting = func(string, string) { close(waiting) }
		release := make(chan struct{})
		running := make(chan struct{}) // the first holds the key and runs
		first := make(chan error, 1)
		go func() {
			_, err := do(ix, "p", "k", func() (any, error) {
				close(running)
				<-release
				return nil, protocol.Errorf(protocol.CodeUnavailable, "down")
			})
			first <- err
		}()
		repeat := make(chan error, 1)
		var secondRan atomic.Bool
		go func() {
			<-running
			_, err := do(ix, "p", "k", func() (any, error) { secondRan.Store(true); return "second", nil })
			repeat <- err
		}()
		<-waiting
		close(release)
		if pe := protocol.AsError(<-first); pe.Code != protocol.CodeUnavailable {
			t.Fatalf("first: got %v, want unavailable", pe)
		}
		if pe := protocol.AsError(<-repeat); pe.Code != protocol.CodeUnavailable || !pe.Retryable {
			t.Fatalf("repeat: got %v, want unavailable, retryable", pe)
		}
		if secondRan.Load() {
			t.Error("the repeat ran its own request: it did not wait for the first")
		}
	})
	t.Run("retryable errors are not remembered", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		runs := 0
		_, err := do(ix, "p", "k", func() (any, error) { runs++; return nil, protocol.Errorf(protocol.CodeUnavailable, "down") })
		if err == nil {
			t.Fatal("want the error")
		}
		r, err := do(ix, "p", "k", func() (any, error) { runs++; return "ok", nil })
		if err != nil || string(r) != `"ok"` || runs != 2 {
			t.Errorf("retry: got %s, %v after %d runs", r, err, runs)
		}
	})
	t.Run("timeouts are remembered when asked", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		runs := 0
		run := func() (json.RawMessage, error) { runs++; return nil, protocol.Errorf(protocol.CodeTimeout, "slow") }
		ix.do(ctx, "p", "k", "fp", true, run)
		_, err := ix.do(ctx, "p", "k", "fp", true, run)
		if pe := protocol.AsError(err); pe.Code != protocol.CodeTimeout || runs != 1 {
			t.Errorf("got %v after %d runs, want the remembered timeout after 1", err, runs)
		}
	})
	t.Run("final errors are remembered", func(t *testing.T) {
		ix, _ := newTestIdem(10, time.Minute, clock)
		runs := 0
		fn := func() (any, error) { runs++; return nil, protocol.Errorf(protocol.CodeConflict, "v") }
		do(ix, "p", "k", fn)
		_, err := do(ix, "p", "k", fn)
		if pe := protocol.AsError(err); pe.Code != protocol.CodeConflict || runs != 1 {
			t.Errorf("got %v after %d runs, want the remembered conflict after 1", err, runs)
		}
	})
	t.Run("a stale pending record is taken over", func(t *testing.T) {
		cur := now
		ix, rec := newTestIdem(10, time.Hour, func() time.Time { return cur })
		// A request that died with its process left the key pending.
		if fresh, _, _, _, _ := rec.IdemBegin(ctx, "p", "k", time.Hour); !fresh {
			t.Fatal("setup: not fresh")
		}
		cur = cur.Add(idemStale + time.Second)
		r, err := do(ix, "p", "k", func() (any, error) { return "taken over", nil })
		if err != nil || string(r) != `"taken over"` {
			t.Errorf("got %s, %v, want the request run again", r, err)
		}
	})
	t.Run("ttl expires records", func(t *testing.T) {
		cur := now
		ix, _ := newTestIdem(10, time.Minute, func() time.Time { return cur })
		runs := 0
		fn := func() (any, error) { runs++; return runs, nil }
		do(ix, "p", "k", fn)
		cur = cur.Add(2 * time.Minute)
		r, _ := do(ix, "p", "k", fn)
		if string(r) != "2" {
			t.Errorf("after ttl: got %s, want a new run", r)
		}
	})
	t.Run("bounded in entries", func(t *testing.T) {
		ix, rec := newTestIdem(100, time.Hour, clock)
		for i := range 5000 {
			do(ix, "p", string(rune(i+1)), func() (any, error) { return i, nil })
		}
		if n := rec.Len(); n > 100 {
			t.Errorf("entries: got %d, want at most 100", n)
		}
		if len(rec.order)-rec.head > 100+1024 {
			t.Errorf("order list: got %d live slots, want it compacted", len(rec.order)-rec.head)
		}
	})
}
