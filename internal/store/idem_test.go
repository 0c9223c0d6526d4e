package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestIdempotency(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			clk := newClock()
			opts := Options{Now: clk.Now}
			dsn := testDSN(t, b)
			db := openDSN(t, dsn, opts)
			ctx := t.Context()

			fresh, done, _, started, err := db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || !fresh || done || !started.Equal(clk.Now()) {
				t.Fatalf("first IdemBegin = done %v started %v fresh %v, %v; want fresh pending started now", done, started, fresh, err)
			}
			fresh, done, _, started2, err := db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || fresh || done || !started2.Equal(started) {
				t.Fatalf("repeat while pending = done %v started %v fresh %v, %v; want pending since the first, not fresh", done, started2, fresh, err)
			}
			// Another principal's key is separate.
			if fresh, _, _, _, _ := db.IdemBegin(ctx, "user:2", "k1", time.Minute); !fresh {
				t.Fatal("same key, other principal: not fresh, want fresh")
			}
			wantErr(t, "IdemFinish", db.IdemFinish(ctx, "user:1", "k1", []byte(`{"id":"x"}`)), nil)
			wantErr(t, "IdemFinish twice", db.IdemFinish(ctx, "user:1", "k1", nil), ErrDuplicate)
			wantErr(t, "IdemFinish unknown", db.IdemFinish(ctx, "user:1", "nope", nil), ErrNotFound)

			// Survives Close and Open.
			wantErr(t, "Close", db.Close(), nil)
			db = openDSN(t, dsn, opts)
			fresh, done, body, _, err := db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || fresh || !done || string(body) != `{"id":"x"}` {
				t.Fatalf("repeat after reopen = done %v body %s fresh %v, %v; want finished", done, body, fresh, err)
			}
			if found, done, body, _, err := db.IdemLookup(ctx, "user:1", "k1"); err != nil || !found || !done || string(body) != `{"id":"x"}` {
				t.Fatalf("IdemLookup = found %v done %v body %s, %v", found, done, body, err)
			}

			// Abort frees a pending key; a finished one stays.
			db.IdemBegin(ctx, "user:1", "k2", time.Minute)
			wantErr(t, "IdemAbort pending", db.IdemAbort(ctx, "user:1", "k2"), nil)
			if fresh, _, _, _, _ := db.IdemBegin(ctx, "user:1", "k2", time.Minute); !fresh {
				t.Fatal("IdemBegin after abort: not fresh")
			}
			wantErr(t, "IdemAbort finished", db.IdemAbort(ctx, "user:1", "k1"), ErrDuplicate)

			// Expired records are replaced as if absent.
			clk.Advance(2 * time.Minute)
			if found, _, _, _, err := db.IdemLookup(ctx, "user:1", "k1"); err != nil || found {
				t.Fatalf("IdemLookup expired = found %v, %v; want not found", found, err)
			}
			fresh, done, body, _, err = db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || !fresh || done || body != nil {
				t.Fatalf("IdemBegin after expiry = done %v body %q fresh %v, %v; want fresh pending", done, body, fresh, err)
			}

			_, _, _, _, err = db.IdemBegin(ctx, "", "k", time.Minute)
			wantErr(t, "IdemBegin empty principal", err, ErrInvalid)

			// Concurrent first requests: exactly one is fresh.
			var freshN atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Go(func() {
					fresh, _, _, _, err := db.IdemBegin(ctx, "user:1", "race", time.Minute)
					if err != nil {
						t.Errorf("concurrent IdemBegin: %v", err)
					}
					if fresh {
						freshN.Add(1)
					}
				})
			}
			wg.Wait()
			if freshN.Load() != 1 {
				t.Fatalf("concurrent IdemBegin: %d fresh, want 1", freshN.Load())
			}
		})
	}
}
