package hub

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

func TestIdemCache(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	ctx := context.Background()

	t.Run("repeat returns the first result", func(t *testing.T) {
		ic := newIdemCache(10, time.Minute, clock)
		runs := 0
		fn := func() (any, error) { runs++; return map[string]int{"n": runs}, nil }
		a, _ := ic.do(ctx, "p", "k", fn)
		b, _ := ic.do(ctx, "p", "k", fn)
		if string(toRaw(a)) != `{"n":1}` {
			t.Errorf("first: got %s", toRaw(a))
		}
		if string(toRaw(b)) != `{"n":1}` || runs != 1 {
			t.Errorf("repeat: got %s after %d runs, want the first result after 1 run", toRaw(b), runs)
		}
	})
	t.Run("keys are per principal", func(t *testing.T) {
		ic := newIdemCache(10, time.Minute, clock)
		var runs int
		fn := func() (any, error) { runs++; return runs, nil }
		ic.do(ctx, "p1", "k", fn)
		ic.do(ctx, "p2", "k", fn)
		if runs != 2 {
			t.Errorf("runs: got %d, want 2", runs)
		}
	})
	t.Run("in-flight duplicates wait", func(t *testing.T) {
		ic := newIdemCache(10, time.Minute, clock)
		var runs atomic.Int32
		release := make(chan struct{})
		var wg sync.WaitGroup
		results := make([]string, 5)
		for i := range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := ic.do(ctx, "p", "k", func() (any, error) {
					runs.Add(1)
					<-release
					return "done", nil
				})
				if err != nil {
					t.Error(err)
				}
				results[i] = string(toRaw(r))
			}()
		}
		time.Sleep(20 * time.Millisecond)
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
	t.Run("retryable errors are not remembered", func(t *testing.T) {
		ic := newIdemCache(10, time.Minute, clock)
		runs := 0
		_, err := ic.do(ctx, "p", "k", func() (any, error) { runs++; return nil, protocol.Errorf(protocol.CodeUnavailable, "down") })
		if err == nil {
			t.Fatal("want the error")
		}
		r, err := ic.do(ctx, "p", "k", func() (any, error) { runs++; return "ok", nil })
		if err != nil || string(toRaw(r)) != `"ok"` || runs != 2 {
			t.Errorf("retry: got %s, %v after %d runs", toRaw(r), err, runs)
		}
	})
	t.Run("final errors are remembered", func(t *testing.T) {
		ic := newIdemCache(10, time.Minute, clock)
		runs := 0
		fn := func() (any, error) { runs++; return nil, protocol.Errorf(protocol.CodeConflict, "v") }
		ic.do(ctx, "p", "k", fn)
		_, err := ic.do(ctx, "p", "k", fn)
		if pe := protocol.AsError(err); pe.Code != protocol.CodeConflict || runs != 1 {
			t.Errorf("got %v after %d runs, want the remembered conflict after 1", err, runs)
		}
	})
	t.Run("ttl expires records", func(t *testing.T) {
		cur := now
		ic := newIdemCache(10, time.Minute, func() time.Time { return cur })
		runs := 0
		fn := func() (any, error) { runs++; return runs, nil }
		ic.do(ctx, "p", "k", fn)
		cur = cur.Add(2 * time.Minute)
		r, _ := ic.do(ctx, "p", "k", fn)
		if string(toRaw(r)) != "2" {
			t.Errorf("after ttl: got %s, want a new run", toRaw(r))
		}
	})
	t.Run("bounded in entries", func(t *testing.T) {
		ic := newIdemCache(100, time.Hour, clock)
		for i := range 5000 {
			ic.do(ctx, "p", string(rune(i)), func() (any, error) { return i, nil })
		}
		if n := ic.Len(); n > 100 {
			t.Errorf("entries: got %d, want at most 100", n)
		}
		if len(ic.order)-ic.head > 100+1024 {
			t.Errorf("order list: got %d live slots, want it compacted", len(ic.order)-ic.head)
		}
	})
}

func toRaw(v any) []byte {
	switch r := v.(type) {
	case []byte:
		return r
	case interface{ MarshalJSON() ([]byte, error) }:
		b, _ := r.MarshalJSON()
		return b
	}
	b, _ := jsonMarshal(v)
	return b
}
