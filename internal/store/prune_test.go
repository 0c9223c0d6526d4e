package store

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// recordHandler passes every log record to a channel.
type recordHandler struct{ ch chan slog.Record }

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.ch <- r:
	default: // the test reads what it waits for; later ticks may drop
	}
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

func TestPruneEvery(t *testing.T) {
	clk := newClock()
	eachBackend(t, Options{Now: clk.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, _, _, _, err := db.IdemBegin(ctx, "p", "old", time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, _, _, _, err := db.IdemBegin(ctx, "p", "live", 3*time.Hour); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Hour)

		logs := make(chan slog.Record, 16)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			db.PruneEvery(runCtx, time.Millisecond, slog.New(recordHandler{logs}))
		}()
		r := <-logs
		if r.Message != "store pruned" || r.Level != slog.LevelDebug {
			t.Fatalf("first record: got %v %q, want debug \"store pruned\"", r.Level, r.Message)
		}
		if got := attr(r, "idempotency").Int64(); got != 1 {
			t.Fatalf("first prune removed %d idempotency records, want 1", got)
		}
		if found, _, _, _, err := db.IdemLookup(ctx, "p", "live"); err != nil || !found {
			t.Fatalf("live idempotency record pruned: found %v, err %v", found, err)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("PruneEvery did not return after its context ended")
		}
	})
}

func TestPruneEveryLogsFailures(t *testing.T) {
	db := openDSN(t, testDSN(t, "sqlite"), Options{})
	db.Close() // every Prune fails from now on

	logs := make(chan slog.Record, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.PruneEvery(ctx, time.Millisecond, slog.New(recordHandler{logs}))
	}()
	for range 2 { // it goes on after a failure
		r := <-logs
		if r.Message != "store prune failed" || r.Level != slog.LevelWarn || attr(r, "err").Any() == nil {
			t.Fatalf("got %v %q, want a warning \"store prune failed\" with err", r.Level, r.Message)
		}
	}
	cancel()
	<-done
}
