package client_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// exampleToken is the credential the examples show; the examples' server
// takes it for alice's laptop.
const exampleToken = "eyJ..."

// TestMain starts a real hub (not client/'s hand-written test server) for
// the examples, whose Output is checked: serverURL points to it.
func TestMain(m *testing.M) {
	h, err := hub.New(hub.Config{
		Namespaces: []hub.NamespaceConfig{{Pattern: "public:{topic}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}}},
	}, hub.Deps{})
	if err == nil {
		err = h.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "examples' hub:", err)
		os.Exit(1)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") != exampleToken {
			http.Error(w, `{"error":{"code":"unauthorized","message":"unknown token"}}`, http.StatusUnauthorized)
			return
		}
		p := &auth.Principal{UserID: "alice", DeviceID: "laptop", Kind: "browser", Scopes: []string{auth.ScopeRead, auth.ScopeWrite}}
		sub := ""
		if strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), protocol.Subprotocol) {
			sub = protocol.Subprotocol
		}
		_, _ = h.Upgrade(w, r, p, sub)
	}))
	serverURL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
	code := m.Run()
	srv.CloseClientConnections()
	srv.Close()
	_ = h.Close()
	os.Exit(code)
}
