package account

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/store"
)

// TestUpdateBodiesKeepTheirWireForm: an update body the store wrote is
// re-encoded from the protocol types byte for byte as stored today, so the
// wire does not change, while a store record is never sent as it is.
func TestUpdateBodiesKeepTheirWireForm(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	enc := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ver := store.Versioned{Value: []byte("ct"), Version: 3}
	for _, tc := range []struct {
		kind string
		body json.RawMessage
	}{
		{store.KindSessionCreated, enc(store.Session{ID: "s1", AccountID: "a", Metadata: ver, AgentState: ver, LastSeq: 2, CreatedAt: at, UpdatedAt: at})},
		{store.KindMachineCreated, enc(store.Machine{ID: "m1", AccountID: "a", Metadata: ver, DaemonState: ver, CreatedAt: at, UpdatedAt: at})},
		{store.KindArtifactCreated, enc(store.Artifact{ID: "r1", AccountID: "a", Header: ver, Body: ver, CreatedAt: at, UpdatedAt: at})},
		{store.KindMessageCreated, enc(store.Message{ID: "x", SessionID: "s1", Seq: 4, LocalID: "l", Body: []byte("b"), CreatedAt: at})},
		{store.KindMessageCreated, enc(store.Message{ID: "x", SessionID: "s1", Seq: 4, Body: []byte("b"), CreatedAt: at})},
		{store.KindDeviceRevoked, enc(store.Device{ID: "d", AccountID: "a", Kind: "phone", Name: "n", PublicKey: []byte("k"), Version: 2, CreatedAt: at, RevokedAt: at})},
		{store.KindDeviceCreated, enc(store.Device{ID: "d", AccountID: "a", Kind: "phone", Name: "n", Version: 1, CreatedAt: at})},
		{store.KindSessionUpdated, enc(map[string]any{"id": "s1", "agentState": ver})},
		{store.KindArtifactDeleted, enc(map[string]string{"id": "r1"})},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			out, err := remapBody(tc.kind, tc.body)
			if err != nil || out == nil {
				t.Fatalf("remap: %s, %v", out, err)
			}
			if string(out) != string(tc.body) {
				t.Fatalf("got  %s\nwant %s", out, tc.body)
			}
		})
	}
	// A device's push token is never in a wire body.
	body := enc(store.Device{ID: "d", PushToken: "secret"})
	if out := wireUpdateBody(store.KindDeviceUpdated, body); strings.Contains(string(out), "secret") {
		t.Fatalf("push token in %s", out)
	}
}
