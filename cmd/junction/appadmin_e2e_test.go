package main

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Issue 14, item 6 (the console's Apps page), end to end: the admin list of
// an app's installations with each user's session activity, and a device's
// recent output outcomes driven through a real device connection and a
// real app session. Every body is checked against the served OpenAPI
// document (contract_check_test.go).

// TestAppAdminInstalls: an app's installations in user id order, paged, with
// the grant and the user's sessions of the app; admin only; 404 for an
// unknown app; bad params name the field.
func TestAppAdminInstalls(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	key := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput)
	apiJSON(t, m, mintToken(t, m, "u0", "u0-phone", "phone", "read", "write"), "PUT", "/api/v1/apps/com.example.fg/install",
		map[string]any{"scopes": []string{"read"}}, 200, nil)
	admin := adminTok(t, m)
	list := func(query string) protocol.AppInstallDetailList {
		t.Helper()
		var res protocol.AppInstallDetailList
		apiJSON(t, m, admin, "GET", "/api/v1/admin/apps/com.example.fg/installs"+query, nil, 200, &res)
		if res.AppID != "com.example.fg" {
			t.Fatalf("appId %q", res.AppID)
		}
		return res
	}

	page := list("?limit=1")
	if len(page.Installs) != 1 || page.Next != "u0" || page.Installs[0].UserID != "u0" || len(page.Installs[0].Scopes) != 1 ||
		page.Installs[0].ActiveSessions != 0 || page.Installs[0].LastSessionAt != nil || page.Installs[0].CreatedAt.IsZero() {
		t.Fatalf("page 1 = %+v; want u0 (read, never started) and next u0", page)
	}
	page = list("?after=u0")
	if len(page.Installs) != 1 || page.Next != "" || page.Installs[0].UserID != "u1" || page.Installs[0].ActiveSessions != 0 {
		t.Fatalf("page 2 = %+v; want u1 alone", page)
	}

	// u1's device starts the app: one active session, and when.
	before := time.Now().Add(-time.Second)
	dev := dialOutputDevice(t, m)
	startOutputApp(t, m, dev, b, "com.example.fg", key)
	page = list("?after=u0")
	in := page.Installs[0]
	if in.ActiveSessions != 1 || in.LastSessionAt == nil || in.LastSessionAt.Before(before) || in.Scopes[0] != "read" || in.Scopes[1] != protocol.ScopeOutput {
		t.Fatalf("u1 after a start = %+v; want 1 active session, started now, scopes read+output", in)
	}

	for _, c := range []struct {
		name, token, path string
		status            int
		code              string
	}{
		{"unknown app", admin, "/api/v1/admin/apps/com.example.none/installs", 404, "not_found"},
		{"not an admin", mintToken(t, m, "u1", "u1-phone", "phone", "read", "write"), "/api/v1/admin/apps/com.example.fg/installs", 403, "forbidden"},
		{"limit 0", admin, "/api/v1/admin/apps/com.example.fg/installs?limit=0", 400, "bad_request"},
		{"limit over 100", admin, "/api/v1/admin/apps/com.example.fg/installs?limit=101", 400, "bad_request"},
	} {
		var e apiError
		apiJSON(t, m, c.token, "GET", c.path, nil, c.status, &e)
		if e.Error.Code != c.code {
			t.Errorf("%s: %+v, want %s", c.name, e, c.code)
		}
	}
}

// TestAppAdminDeviceOutputs: a device declares surfaces, an app session
// requests outputs; the admin route lists each request's one terminal
// outcome newest first, with the app, session, priority and times, and how
// a shown one ended; the record outlives the device's connection (per
// node, in memory); an unknown device has an empty record.
func TestAppAdminDeviceOutputs(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	key := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput)
	dev := dialOutputDevice(t, m)
	fg := startOutputApp(t, m, dev, b, "com.example.fg", key)
	admin := adminTok(t, m)
	outputs := func(device, query string) protocol.DeviceOutputs {
		t.Helper()
		var res protocol.DeviceOutputs
		apiJSON(t, m, admin, "GET", "/api/v1/admin/devices/"+url.PathEscape(device)+"/outputs"+query, nil, 200, &res)
		if res.DeviceID != device || res.NodeID != m.Hub.NodeID() {
			t.Fatalf("outputs of %s = %+v; want the device and node %s", device, res, m.Hub.NodeID())
		}
		return res
	}
	if got := outputs("u1-glasses", ""); got.Declared || len(got.Outcomes) != 0 {
		t.Fatalf("before a declaration: %+v", got)
	}

	dev.declare(t, false, protocol.OutputSurface{Name: "main"})
	t0 := time.Now()
	fg.request(t, protocol.OutputRequestParams{ID: "a", Surface: "main", Content: content("caption")})
	dev.expect(t, `show main com.example.fg a {"text":"caption"}`)
	fg.expect(t, "a shown")
	fg.request(t, protocol.OutputRequestParams{ID: "b", Surface: "hud", Content: content("x")})
	fg.expect(t, "b rejected unknown_surface final")
	got := outputs("u1-glasses", "")
	if !got.Declared || len(got.Outcomes) != 2 {
		t.Fatalf("after two requests: %+v; want declared, two outcomes", got)
	}
	b0, a0 := got.Outcomes[0], got.Outcomes[1]
	if b0.RequestID != "b" || b0.Outcome != "rejected" || b0.Reason != "unknown_surface" || b0.Surface != "hud" || b0.EndedAt != nil {
		t.Errorf("newest = %+v; want b rejected unknown_surface", b0)
	}
	if a0.RequestID != "a" || a0.Outcome != "shown" || a0.AppID != "com.example.fg" || a0.SessionID != fg.sid || a0.Priority != "foreground" ||
		a0.Surface != "main" || a0.EndedAt != nil || a0.RequestedAt.Before(t0.Add(-time.Second)) || a0.DecidedAt.Before(a0.RequestedAt) {
		t.Errorf("oldest = %+v; want a shown by com.example.fg (session %s), foreground, still on the device", a0, fg.sid)
	}

	// The app cancels a: it leaves the device for good (cleared).
	var cancelled protocol.OutputCancelled
	if err := fg.c.Call(context.Background(), "output.cancel", protocol.OutputCancelParams{RequestID: "a"}, &cancelled); err != nil || !cancelled.Found {
		t.Fatalf("cancel: %+v %v", cancelled, err)
	}
	dev.expect(t, "clear main")
	fg.expect(t, "a hidden cleared final")
	got = outputs("u1-glasses", "?limit=1")
	if len(got.Outcomes) != 1 || got.Outcomes[0].RequestID != "b" {
		t.Fatalf("limit 1 = %+v; want b alone", got)
	}
	a1 := outputs("u1-glasses", "").Outcomes[1]
	if a1.EndedAt == nil || a1.EndReason != "cleared" || a1.EndedAt.Before(a1.DecidedAt) {
		t.Fatalf("a after the cancel = %+v; want ended cleared", a1)
	}

	// A request waiting when the device disconnects ends device_gone; the
	// record stays after the connection is gone.
	fg.request(t, protocol.OutputRequestParams{ID: "c", Surface: "main", Content: content("c")})
	dev.expect(t, `show main com.example.fg c {"text":"c"}`)
	fg.expect(t, "c shown")
	dev.c.Close()
	fg.expect(t, "c hidden device_gone final")
	got = outputs("u1-glasses", "")
	if got.Declared || len(got.Outcomes) != 3 || got.Outcomes[0].RequestID != "c" || got.Outcomes[0].EndReason != "device_gone" {
		t.Fatalf("after the device left: %+v; want not declared, c ended device_gone first", got)
	}
	if got := outputs("nobody", ""); got.Declared || len(got.Outcomes) != 0 {
		t.Fatalf("unknown device: %+v", got)
	}
	for _, c := range []struct {
		name, token, path string
		status            int
	}{
		{"not an admin", mintToken(t, m, "u1", "u1-phone", "phone", "read", "write"), "/api/v1/admin/devices/u1-glasses/outputs", 403},
		{"limit over 50", admin, "/api/v1/admin/devices/u1-glasses/outputs?limit=51", 400},
	} {
		if status, raw := apiCall(t, m, c.token, "GET", c.path, nil); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, raw, c.status)
		}
	}
}
