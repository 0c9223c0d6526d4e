package hub

import (
	"fmt"
	"slices"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
)

// TestRegistryUserConns: a user's connections are listed in registration
// order whichever of them leave, and a user with none is forgotten.
func TestRegistryUserConns(t *testing.T) {
	var r registry
	r.init()
	p := &auth.Principal{UserID: "alice"}
	conns := make([]*Conn, 4)
	for i := range conns {
		conns[i] = &Conn{}
		copy(conns[i].id[:], fmt.Sprintf("c-%016d", i))
		conns[i].principal.Store(p)
		r.add(conns[i])
	}
	list := func() []*Conn {
		var got []*Conn
		r.eachOfUser("alice", func(c *Conn) { got = append(got, c) })
		return got
	}
	ids := func(cs []*Conn) (s []string) {
		for _, c := range cs {
			s = append(s, c.ID())
		}
		return s
	}
	want := slices.Clone(conns)
	check := func() {
		t.Helper()
		if got := list(); !slices.Equal(got, want) {
			t.Fatalf("eachOfUser: got %v, want %v", ids(got), ids(want))
		}
	}
	check()
	for _, i := range []int{0, 2, 3, 1} { // the first, a middle one, the last, the only one
		r.remove(conns[i])
		want = slices.DeleteFunc(want, func(c *Conn) bool { return c == conns[i] })
		check()
	}
	if s := r.shard("u/alice"); len(s.users) != 0 || len(s.more) != 0 {
		t.Fatalf("%d users (%d with more) left after every connection left, want 0", len(s.users), len(s.more))
	}
	// A connection that is not registered changes nothing.
	r.add(conns[0])
	r.remove(conns[1])
	want = []*Conn{conns[0]}
	check()
}
