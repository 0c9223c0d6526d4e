package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// TestRedisSharedSecurityState: the security switches are cluster-wide.
// A logout on node A closes the login's connection on node B at once
// (4003); lockdown turned on through node A closes node B's connections
// from public addresses (4010) and refuses new ones there, a node started
// afterwards starts in lockdown, and lockdown turned off through node B
// lets public clients into node A again.
func TestRedisSharedSecurityState(t *testing.T) {
	rs := redistest.New(t, redistest.Options{})
	configure := func(c *Config) { c.Web.TrustedProxies = []string{"127.0.0.0/8"} }
	nodes := clusterNodes(t, rs, 2, configure)
	a, b := nodes[0], nodes[1]
	loginToken := func(m *Main, device string) string {
		tok, _, err := m.Tokens.Issue(auth.Claims{UserID: "alice", DeviceID: device, Kind: "phone", SessionID: "login-1",
			Scopes: []string{auth.ScopeRead, auth.ScopeWrite}}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	from := func(m *Main, token, addr string) http.Header {
		h := bearer(token)
		h.Set("X-Forwarded-For", addr)
		return h
	}

	t.Run("logout on A closes the login on B", func(t *testing.T) {
		onB, _, err := dialRaw(t, b, bearer(loginToken(b, "d-login")), "")
		if err != nil {
			t.Fatal(err)
		}
		onB.mustNext() // welcome
		apiJSON(t, a, loginToken(a, "d-rest"), "POST", "/api/v1/auth/logout", nil, 200, nil)
		if f, code := onB.next(); code != protocol.CloseForbidden {
			t.Fatalf("the login's connection on node B after a logout on node A: frame %v, close %d; want %d", f, code, protocol.CloseForbidden)
		}
	})

	t.Run("lockdown", func(t *testing.T) {
		remote, _, err := dialRaw(t, b, from(b, mintToken(t, b, "u-lock", "d-remote", "phone"), "203.0.113.9"), "")
		if err != nil {
			t.Fatalf("dial node B from a public address: %v", err)
		}
		remote.mustNext()
		adminA := mintToken(t, a, "u-admin", "d-admin", "machine", auth.ScopeAdmin)
		apiJSON(t, a, adminA, "POST", "/api/v1/admin/lockdown", map[string]bool{"enabled": true}, 200, nil)
		if f, code := remote.next(); code != protocol.CloseLockdown {
			t.Fatalf("public client of node B after lockdown on node A: frame %v, close %d; want %d", f, code, protocol.CloseLockdown)
		}
		if _, resp, err := dialRaw(t, b, from(b, mintToken(t, b, "u-lock", "d-remote", "phone"), "203.0.113.9"), ""); err == nil || resp == nil || resp.StatusCode != 503 {
			t.Fatalf("new handshake on node B from a public address in lockdown: err %v, resp %v; want 503", err, resp)
		}
		// A node started now follows the cluster's state.
		c := clusterNodes(t, rs, 1, configure)[0]
		var info protocol.ServerInfo
		apiJSON(t, c, "", "GET", "/api/v1/info", nil, 200, &info)
		if !info.Lockdown {
			t.Fatal("a node started after lockdown was turned on is not in lockdown")
		}

		adminB := mintToken(t, b, "u-admin", "d-admin2", "machine", auth.ScopeAdmin)
		apiJSON(t, b, adminB, "POST", "/api/v1/admin/lockdown", map[string]bool{"enabled": false}, 200, nil)
		eventually(t, "node A out of lockdown", func() bool {
			var info protocol.ServerInfo
			apiJSON(t, a, "", "GET", "/api/v1/info", nil, 200, &info)
			return !info.Lockdown
		})
		again, _, err := dialRaw(t, a, from(a, mintToken(t, a, "u-lock", "d-remote", "phone"), "203.0.113.9"), "")
		if err != nil {
			t.Fatalf("dial node A from a public address after lockdown ended: %v", err)
		}
		again.mustNext()
	})
}
