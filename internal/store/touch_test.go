package store

import (
	"fmt"
	"testing"
	"time"
)

// TestTouchDevices: last-seen times of a batch longer than one transaction
// are all recorded, each device's own time; unknown devices and devices of
// another account are skipped and not counted; the sync log is untouched.
func TestTouchDevices(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct, other := newAccount(t, db), newAccount(t, db)
		a, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		b, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "tv"})
		if err != nil {
			t.Fatal(err)
		}
		seqBefore, err := db.UpdateSeq(ctx, acct)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
		seen := make([]SeenDevice, 0, touchBatch+44)
		seen = append(seen, SeenDevice{Account: acct, ID: a.ID, At: at})
		for i := 0; len(seen) < touchBatch+43; i++ {
			seen = append(seen, SeenDevice{Account: acct, ID: fmt.Sprintf("d-unknown-%d", i), At: at})
		}
		seen = append(seen, SeenDevice{Account: other, ID: b.ID, At: at})                 // not other's device
		seen = append(seen, SeenDevice{Account: acct, ID: b.ID, At: at.Add(time.Second)}) // in the second transaction
		n, err := db.TouchDevices(ctx, seen)
		if err != nil || n != 2 {
			t.Fatalf("TouchDevices of %d = %d, %v: want 2", len(seen), n, err)
		}
		for _, w := range []struct {
			id   string
			want time.Time
		}{{a.ID, at}, {b.ID, at.Add(time.Second)}} {
			d, err := db.Device(ctx, acct, w.id)
			if err != nil || !d.LastSeenAt.Equal(w.want) {
				t.Fatalf("device %s LastSeenAt = %v, %v: want %v", w.id, d.LastSeenAt, err, w.want)
			}
		}
		if seq, err := db.UpdateSeq(ctx, acct); err != nil || seq != seqBefore {
			t.Fatalf("update seq after TouchDevices = %d, %v: want %d (no update)", seq, err, seqBefore)
		}
		if n, err := db.TouchDevices(ctx, nil); err != nil || n != 0 {
			t.Fatalf("TouchDevices of none = %d, %v", n, err)
		}
	})
}
