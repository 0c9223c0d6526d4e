package hub_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestReauthorizeFromStale: a principal derived from one that another
// change has replaced since is not stored, so the change that replaced it
// stands (two narrowings never undo one another); Amend derives again from
// the current principal.
func TestReauthorizeFromStale(t *testing.T) {
	ts := startHub(t, hub.Config{}, nil)
	cl := ts.dial(t, "u1/d1/read,write")
	var c *hub.Conn
	ts.hub.ConnsOfUser("u1", func(x *hub.Conn) { c = x })
	if c == nil {
		t.Fatal("the connection of u1 is not registered")
	}
	ctx := context.Background()
	orig := c.Principal()

	narrowed := *orig
	narrowed.Scopes = []string{"read"}
	if ok, err := ts.hub.ReauthorizeFrom(ctx, c, orig, &narrowed); !ok || err != nil {
		t.Fatalf("ReauthorizeFrom the current principal: %v %v, want it stored", ok, err)
	}
	// Derived from orig, which the narrowing replaced: a wider set than the
	// current one must not come back.
	stale := *orig
	stale.Scopes = []string{"read", "write"}
	if ok, err := ts.hub.ReauthorizeFrom(ctx, c, orig, &stale); ok || err != nil {
		t.Fatalf("ReauthorizeFrom a replaced principal: %v %v, want false and no error", ok, err)
	}
	if c.Principal() != &narrowed {
		t.Fatalf("principal %+v, want the narrowed one to stand", c.Principal())
	}

	if err := ts.hub.Amend(ctx, c, func(p auth.Principal) auth.Principal {
		p.Scopes = auth.IntersectScopes(p.Scopes, []string{"write"})
		return p
	}); err != nil {
		t.Fatal(err)
	}
	var who protocol.WhoamiResult
	if err := call(t, cl, "conn.whoami", nil, &who); err != nil || fmt.Sprint(who.Principal.Scopes) != "[]" {
		t.Fatalf("conn.whoami after Amend: %+v %v, want no scopes (read ∩ write)", who.Principal, err)
	}

	other := *c.Principal()
	other.UserID = "u2"
	if _, err := ts.hub.ReauthorizeFrom(ctx, c, c.Principal(), &other); err == nil {
		t.Fatal("ReauthorizeFrom another identity: no error")
	}
}
