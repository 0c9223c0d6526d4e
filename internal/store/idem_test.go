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

			rec, fresh, err := db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || !fresh || rec.Done {
				t.Fatalf("first IdemBegin = %+v fresh %v, %v; want fresh pending", rec, fresh, err)
			}
			rec, fresh, err = db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || fresh || rec.Done {
				t.Fatalf("repeat while pending = %+v fresh %v, %v; want pending, not fresh", rec, fresh, err)
			}
			// Another principal's key is separate.
			if _, fresh, _ := db.IdemBegin(ctx, "user:2", "k1", time.Minute); !fresh {
				t.Fatal("same key, other principal: not fresh, want fresh")
			}
			wantErr(t, "IdemFinish", db.IdemFinish(ctx, "user:1", "k1", 201, []byte(`{"id":"x"}`)), nil)
			wantErr(t, "IdemFinish twice", db.IdemFinish(ctx, "user:1", "k1", 500, nil), ErrDuplicate)
			wantErr(t, "IdemFinish unknown", db.IdemFinish(ctx, "user:1", "nope", 200, nil), ErrNotFound)

			// Survives Close and Open.
			wantErr(t, "Close", db.Close(), nil)
			db = openDSN(t, dsn, opts)
			rec, fresh, err = db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || fresh || !rec.Done || rec.Status != 201 || string(rec.Body) != `{"id":"x"}` {
				t.Fatalf("repeat after reopen = %+v fresh %v, %v; want finished 201", rec, fresh, err)
			}
			if got, err := db.Idem(ctx, "user:1", "k1"); err != nil || !got.Done {
				t.Fatalf("Idem = %+v, %v", got, err)
			}

			// Abort frees a pending key; a finished one stays.
			db.IdemBegin(ctx, "user:1", "k2", time.Minute)
			wantErr(t, "IdemAbort pending", db.IdemAbort(ctx, "user:1", "k2"), nil)
			if _, fresh, _ := db.IdemBegin(ctx, "user:1", "k2", time.Minute); !fresh {
				t.Fatal("IdemBegin after abort: not fresh")
			}
			wantErr(t, "IdemAbort finished", db.IdemAbort(ctx, "user:1", "k1"), ErrDuplicate)

			// Expired records are replaced as if absent.
			clk.Advance(2 * time.Minute)
			_, err = db.Idem(ctx, "user:1", "k1")
			wantErr(t, "Idem expired", err, ErrNotFound)
			rec, fresh, err = db.IdemBegin(ctx, "user:1", "k1", time.Minute)
			if err != nil || !fresh || rec.Done || rec.Body != nil {
				t.Fatalf("IdemBegin after expiry = %+v fresh %v, %v; want fresh pending", rec, fresh, err)
			}

			_, _, err = db.IdemBegin(ctx, "", "k", time.Minute)
			wantErr(t, "IdemBegin empty principal", err, ErrInvalid)

			// Concurrent first requests: exactly one is fresh.
			var freshN atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Go(func() {
					_, fresh, err := db.IdemBegin(ctx, "user:1", "race", time.Minute)
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
