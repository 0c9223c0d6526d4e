package store

import (
	"testing"
	"time"
)

// TestNewIDGrows: ids made within one millisecond, or after the clock
// stepped back, still grow, so that listings ordered by id are ordered by
// creation.
func TestNewIDGrows(t *testing.T) {
	var g idGen
	now := time.UnixMilli(1_800_000_000_000)
	prev := g.next(now)
	for i := range 1000 {
		at := now
		if i%100 == 99 {
			at = now.Add(-time.Second) // the clock stepped back
		}
		id := g.next(at)
		if len(id) != 26 || id <= prev {
			t.Fatalf("id %d: %q after %q, want a 26-character id greater than the last", i, id, prev)
		}
		prev = id
	}
	// A later millisecond starts from the clock again (random tail).
	if later := g.next(now.Add(time.Hour)); later <= prev || later[:9] == prev[:9] {
		t.Fatalf("an hour later: %q after %q, want a new time prefix", later, prev)
	}
}
