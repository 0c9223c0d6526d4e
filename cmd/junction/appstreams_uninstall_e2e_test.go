package main

import (
	"encoding/json"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// TestAppStreamsUninstallMidStream: uninstalling the app while the device
// streams stops the session (app.stopped, permission_revoked, then 1000),
// the device's demand drops to nothing and what it publishes after that
// reaches nobody.
func TestAppStreamsUninstallMidStream(t *testing.T) {
	e := streamSetup(t, nil, 0)
	e.set(t, 1, "transcript", "audio")
	if got := e.dev.demand(); len(got) != 2 {
		t.Fatalf("demand before the uninstall %v", got)
	}
	e.publish(t, "transcript", "one")
	if ev := e.app.streamEvent(); string(ev.Data) != `"one"` {
		t.Fatalf("first event %+v", ev)
	}
	e.dev.sendBinary("audio", 1, []byte("a"))
	if m := e.app.streamMessage(); m.bin == nil {
		t.Fatalf("got %+v, want the audio frame", m.f)
	}

	apiJSON(t, e.m, mintToken(t, e.m, "u1", "u1-phone", "phone"), "DELETE", "/api/v1/apps/"+streamApp+"/install", nil, 200, nil)
	f := e.app.event(protocol.EventAppStopped)
	var st protocol.AppStopped
	if err := json.Unmarshal(f.Data, &st); err != nil || st.SessionID != e.session || st.Reason != protocol.StopPermissionRevoked || st.Reconnect {
		t.Fatalf("app.stopped %+v %v, want permission_revoked without reconnect", st, err)
	}
	if code := e.app.closeCode(); code != protocol.CloseNormal {
		t.Fatalf("the app's connection closed with %d, want 1000", code)
	}
	if got := e.dev.demand(); len(got) != 0 {
		t.Fatalf("demand after the uninstall %v, want none", got)
	}
	if pub := e.publish(t, "transcript", "two"); pub.Delivered != 0 {
		t.Fatalf("published after the uninstall: %+v, want delivered to nobody", pub)
	}
	for _, m := range e.app.held {
		if m.bin != nil || (m.f != nil && m.f.Event == protocol.EventStream) {
			t.Fatalf("delivered after the uninstall: %+v %q", m.f, m.bin)
		}
	}
}
