package cluster

import (
	"fmt"
	"testing"
	"time"
)

// TestRouteCacheBounds: the cache holds at most its size of devices and of
// nodes, forgets nothing younger than its ttl that it did not have to, and
// answers nothing older.
func TestRouteCacheBounds(t *testing.T) {
	c := newRouteCache(time.Second, 3)
	t0 := time.Unix(1000, 0)
	for i := range 10 {
		c.storeClaim(c.seq.Load(), fmt.Sprintf("d%d", i), DeviceClaim{Node: "n2", Generation: 1}, t0)
		c.storeLease(c.seq.Load(), fmt.Sprintf("n%d", i), "boot", t0)
	}
	if got := len(c.devices); got != 3 {
		t.Fatalf("devices cached: got %d, want the bound 3", got)
	}
	if got := len(c.leases); got != 3 {
		t.Fatalf("leases cached: got %d, want the bound 3", got)
	}
	if _, ok := c.claim("d9", t0.Add(999*time.Millisecond)); !ok {
		t.Fatal("the newest claim is not cached within its ttl")
	}
	if _, ok := c.claim("d9", t0.Add(time.Second)); ok {
		t.Fatal("a claim as old as the ttl is still answered")
	}
	if _, ok := c.lease("n9", t0.Add(time.Second)); ok {
		t.Fatal("a lease as old as the ttl is still answered")
	}
	// A full cache makes room with an expired entry when it finds one.
	c.storeClaim(c.seq.Load(), "d9", DeviceClaim{Node: "n2", Generation: 1}, t0.Add(5*time.Second))
	c.storeClaim(c.seq.Load(), "fresh", DeviceClaim{Node: "n2", Generation: 1}, t0.Add(5*time.Second))
	if _, ok := c.claim("d9", t0.Add(5*time.Second)); !ok {
		t.Fatal("a live entry was evicted while expired ones were there")
	}
}

// TestRouteCacheFences: an answer read before an invalidation is not
// stored after it, and an older generation never replaces a newer one.
func TestRouteCacheFences(t *testing.T) {
	c := newRouteCache(time.Minute, 100)
	now := time.Unix(1000, 0)
	seq := c.seq.Load()  // a lookup starts
	c.forgetDevice("d1") // the route proves stale meanwhile
	c.storeClaim(seq, "d1", DeviceClaim{Node: "n2", Generation: 4}, now)
	if got, ok := c.claim("d1", now); ok {
		t.Fatalf("claim read before an invalidation was stored after it: %+v", got)
	}
	seq = c.seq.Load()
	c.forgetNode("n2")
	c.storeLease(seq, "n2", "boot", now)
	if _, ok := c.lease("n2", now); ok {
		t.Fatal("lease read before an invalidation was stored after it")
	}
	c.storeClaim(c.seq.Load(), "d1", DeviceClaim{Node: "n3", Generation: 7}, now)
	c.storeClaim(c.seq.Load(), "d1", DeviceClaim{Node: "n2", Generation: 6}, now)
	if got, _ := c.claim("d1", now); got.Node != "n3" || got.Generation != 7 {
		t.Fatalf("claim %+v, want n3's generation 7 (the older one must not replace it)", got)
	}
	off := newRouteCache(-1, 100)
	off.storeClaim(off.seq.Load(), "d1", DeviceClaim{Node: "n2", Generation: 1}, now)
	if _, ok := off.claim("d1", now); ok {
		t.Fatal("a disabled cache (negative ttl) answered")
	}
}
