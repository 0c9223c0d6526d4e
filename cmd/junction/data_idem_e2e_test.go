package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// TestIdempotencyConcurrentAndAcrossTransports sends one key many times at
// once (one session results) and repeats a REST request on the WebSocket.
func TestIdempotencyConcurrentAndAcrossTransports(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone")
	body := map[string]string{"metadata": b64([]byte("same"))}

	const n = 8
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s protocol.Session
			status, raw := apiCall(t, m, tok.AccessToken, "POST", "/api/v1/sessions", body, "Idempotency-Key", "burst")
			if status != 201 {
				t.Errorf("request %d: status %d, %s", i, status, raw)
				return
			}
			if err := jsonUnmarshal(raw, &s); err != nil {
				t.Error(err)
				return
			}
			ids[i] = s.ID
		}()
	}
	wg.Wait()
	for i := range ids {
		if ids[i] != ids[0] {
			t.Fatalf("concurrent repeats: got ids %v, want one id", ids)
		}
	}
	var list protocol.ObjectList[protocol.Session]
	apiJSON(t, m, tok.AccessToken, "GET", "/api/v1/sessions", nil, 200, &list)
	if len(list.Items) != 1 {
		t.Fatalf("sessions after %d concurrent repeats: got %d, want 1", n, len(list.Items))
	}

	// The same key and request on the WebSocket returns the REST result.
	c := dialToken(t, m, tok.AccessToken)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var viaWS protocol.Session
	if err := c.CallIdem(ctx, "session.create", body, "burst", &viaWS); err != nil {
		t.Fatal(err)
	}
	if viaWS.ID != ids[0] {
		t.Fatalf("WebSocket repeat of a REST request: got %s, want %s", viaWS.ID, ids[0])
	}
	// Keys are per device: another device of the account with the same key
	// creates its own session.
	other := login(t, m, newKey(t), "phone")
	var s2 protocol.Session
	apiJSON(t, m, other.AccessToken, "POST", "/api/v1/sessions", body, 201, &s2, "Idempotency-Key", "burst")
	if s2.ID == ids[0] {
		t.Fatal("another principal's key answered with the first principal's result")
	}
	// A delete repeated answers the first result rather than 404.
	apiJSON(t, m, tok.AccessToken, "DELETE", "/api/v1/sessions/"+ids[0], nil, 200, nil, "Idempotency-Key", "del")
	apiJSON(t, m, tok.AccessToken, "DELETE", "/api/v1/sessions/"+ids[0], nil, 200, nil, "Idempotency-Key", "del")
	if status, _ := apiCall(t, m, tok.AccessToken, "DELETE", "/api/v1/sessions/"+ids[0], nil, "Idempotency-Key", "del2"); status != 404 {
		t.Fatalf("delete with a new key: status %d, want 404", status)
	}
}
