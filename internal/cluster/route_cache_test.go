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
		d, n := fmt.Sprintf("d%d", i), fmt.Sprintf("n%d", i)
		c.storeClaim(c.claimSeq(d), d, DeviceClaim{Node: "n2", Generation: 1}, t0)
		c.storeLease(c.leaseSeq(n), n, "boot", t0)
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
	c.storeClaim(c.claimSeq("d9"), "d9", DeviceClaim{Node: "n2", Generation: 1}, t0.Add(5*time.Second))
	c.storeClaim(c.claimSeq("fresh"), "fresh", DeviceClaim{Node: "n2", Generation: 1}, t0.Add(5*time.Second))
	if _, ok := c.claim("d9", t0.Add(5*time.Second)); !ok {
		t.Fatal("a live entry was evicted while expired ones were there")
	}
}

// TestRouteCacheFences: an answer read before an invalidation is not
// stored after it, and an older generation never replaces a newer one.
func TestRouteCacheFences(t *testing.T) {
	c := newRouteCache(time.Minute, 100)
	now := time.Unix(1000, 0)
	seq := c.claimSeq("d1") // a lookup starts
	c.forgetDevice("d1")    // the route proves stale meanwhile
	c.storeClaim(seq, "d1", DeviceClaim{Node: "n2", Generation: 4}, now)
	if got, ok := c.claim("d1", now); ok {
		t.Fatalf("claim read before an invalidation was stored after it: %+v", got)
	}
	seq = c.leaseSeq("n2")
	c.forgetNode("n2")
	c.storeLease(seq, "n2", "boot", now)
	if _, ok := c.lease("n2", now); ok {
		t.Fatal("lease read before an invalidation was stored after it")
	}
	// Another device's invalidation (a connect on this node claims its
	// device) voids only lookups that share its stripe, not all of them.
	voided := 0
	for i := range 100 {
		c.forgetDevice("d2")
		seq := c.claimSeq("d2")
		c.forgetDevice(fmt.Sprintf("other%d", i))
		c.storeClaim(seq, "d2", DeviceClaim{Node: "n2", Generation: 1}, now)
		if _, ok := c.claim("d2", now); !ok {
			voided++
		}
	}
	if voided > 10 {
		t.Fatalf("%d of 100 lookups voided by other devices' invalidations, want about 100/%d", voided, routeSeqStripes)
	}
	c.storeClaim(c.claimSeq("d1"), "d1", DeviceClaim{Node: "n3", Generation: 7}, now)
	c.storeClaim(c.claimSeq("d1"), "d1", DeviceClaim{Node: "n2", Generation: 6}, now)
	if got, _ := c.claim("d1", now); got.Node != "n3" || got.Generation != 7 {
		t.Fatalf("claim %+v, want n3's generation 7 (the older one must not replace it)", got)
	}
	off := newRouteCache(-1, 100)
	off.storeClaim(off.claimSeq("d1"), "d1", DeviceClaim{Node: "n2", Generation: 1}, now)
	if _, ok := off.claim("d1", now); ok {
		t.Fatal("a disabled cache (negative ttl) answered")
	}
}
