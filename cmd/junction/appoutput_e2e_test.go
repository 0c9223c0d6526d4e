package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Issue 13, item 7, end to end: a simulated device declares its surfaces
// and gets output.show / output.clear; real app backends (appBackend)
// start sessions, connect with key + ticket and send output.request; each
// app hears output.status for every request.

// outputServer starts a server whose background lease is lease.
func outputServer(t *testing.T, lease time.Duration) *Main {
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ConnectTimeout = 10 * time.Second
		c.Apps.OutputLease = lease
	})
	return m
}

// userTok is a token of u1's phone able to grant the output scopes.
func outputUserTok(t *testing.T, m *Main) string {
	return mintToken(t, m, "u1", "u1-phone", "phone", "read", "write", protocol.ScopeOutput, protocol.ScopeOutputForce)
}

// registerOutputApp registers an app of kind and priority asking for
// read and the output scopes, and installs it for u1 granting grant.
func registerOutputApp(t *testing.T, m *Main, b *appBackend, id, kind, priority string, grant ...string) string {
	t.Helper()
	created := createApp(t, m, map[string]any{"id": id, "name": id, "kind": kind, "priority": priority,
		"scopes": []string{"read", protocol.ScopeOutput, protocol.ScopeOutputForce}, "webhookUrl": b.srv.URL + "/hooks", "internal": true})
	b.addSecret(created.WebhookSecret.Secret)
	apiJSON(t, m, outputUserTok(t, m), "PUT", "/api/v1/apps/"+id+"/install", map[string]any{"scopes": grant}, 200, nil)
	return created.Key.Key
}

// addSecret lets b verify the webhooks of one more app.
func (b *appBackend) addSecret(secret string) {
	b.t.Helper()
	sec, err := webhook.ParseSecret(secret)
	if err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	b.secrets = append(b.secrets, sec)
	b.mu.Unlock()
}

// outDevice is the device with its surface commands as lines
// ("show main com.x a "content"", "clear main").
type outDevice struct {
	*device
	cmds chan string
}

func dialOutputDevice(t *testing.T, m *Main) *outDevice {
	d := &outDevice{device: dialDevice(t, m, "u1", "u1-glasses"), cmds: make(chan string, 64)}
	d.c.OnEvent(protocol.EventOutputShow, func(f *protocol.Frame) {
		var s protocol.OutputShow
		if err := json.Unmarshal(f.Data, &s); err != nil {
			t.Errorf("output.show %s: %v", f.Data, err)
		}
		d.cmds <- fmt.Sprintf("show %s %s %s %s", s.Surface, s.AppID, s.RequestID, s.Content)
	})
	d.c.OnEvent(protocol.EventOutputClear, func(f *protocol.Frame) {
		var s protocol.OutputClear
		_ = json.Unmarshal(f.Data, &s)
		d.cmds <- "clear " + s.Surface
	})
	return d
}

func (d *outDevice) declare(t *testing.T, booting bool, surfaces ...protocol.OutputSurface) {
	t.Helper()
	var res protocol.OutputDeclared
	if err := d.c.Call(context.Background(), "output.declare", protocol.OutputDeclareParams{Surfaces: surfaces, Booting: booting}, &res); err != nil {
		t.Fatalf("output.declare: %v", err)
	}
	if len(res.Surfaces) != len(surfaces) || res.Booting != booting {
		t.Fatalf("declared %+v", res)
	}
}

// expect reads the device's next commands.
func (d *outDevice) expect(t *testing.T, want ...string) {
	t.Helper()
	expectLines(t, "device", d.cmds, want...)
}

// outApp is an app's session connection with its output.status events as
// lines ("a shown", "a hidden preempted pending", "b rejected busy retry final").
type outApp struct {
	*appConn
	id     string
	sid    string
	status chan string
}

// startOutputApp starts app id on d and connects it.
func startOutputApp(t *testing.T, m *Main, d *outDevice, b *appBackend, id, key string) *outApp {
	t.Helper()
	st := d.start(t, id)
	hook := b.next("session.start")
	a := &outApp{appConn: connectApp(t, m, key, hook), id: id, sid: st.Session.ID, status: make(chan string, 64)}
	d.wait(t, st.Session.ID, protocol.AppStateRunning)
	a.c.OnEvent(protocol.EventOutputStatus, func(f *protocol.Frame) {
		var s protocol.OutputStatus
		if err := json.Unmarshal(f.Data, &s); err != nil {
			t.Errorf("output.status %s: %v", f.Data, err)
		}
		l := s.RequestID + " " + s.Kind
		if s.Reason != "" {
			l += " " + s.Reason
		}
		if s.RetryAfterMs > 0 {
			l += " retry"
		}
		if s.Pending {
			l += " pending"
		}
		if s.Final {
			l += " final"
		}
		a.status <- l
	})
	return a
}

func (a *outApp) request(t *testing.T, p protocol.OutputRequestParams) protocol.OutputAccepted {
	t.Helper()
	var res protocol.OutputAccepted
	if err := a.c.Call(context.Background(), "output.request", p, &res); err != nil {
		t.Fatalf("%s output.request %+v: %v", a.id, p, err)
	}
	if p.ID != "" && res.RequestID != p.ID {
		t.Fatalf("accepted %+v, want id %s", res, p.ID)
	}
	return res
}

func (a *outApp) expect(t *testing.T, want ...string) {
	t.Helper()
	expectLines(t, a.id, a.status, want...)
}

func expectLines(t *testing.T, who string, ch chan string, want ...string) {
	t.Helper()
	for i, w := range want {
		select {
		case got := <-ch:
			if got != w {
				t.Fatalf("%s, line %d: got %q, want %q", who, i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s, line %d: nothing, want %q", who, i, w)
		}
	}
}

// nextLine returns the next line of ch.
func nextLine(t *testing.T, who string, ch chan string) string {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing more", who)
	}
	return ""
}

// quiet checks that nothing more has arrived on ch.
func quiet(t *testing.T, who string, ch chan string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("%s: unexpected %q", who, got)
	default:
	}
}

func content(s string) json.RawMessage { return json.RawMessage(`{"text":"` + s + `"}`) }

// TestAppOutputBootPreemptRestore: two apps on one device. Requests made
// while the device boots are queued (boot) and reach it when it is ready;
// a system app's request preempts the foreground one, which (restore
// on_resume) comes back when the system request's TTL ends; an unknown
// surface is rejected; a cancel clears; the identity the device sees is
// the one the gateway stamped; the outcomes are counted.
func TestAppOutputBootPreemptRestore(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	fgKey := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput)
	sysKey := registerOutputApp(t, m, b, "com.example.sys", "background", "system", "read", protocol.ScopeOutput)
	dev := dialOutputDevice(t, m)
	fg := startOutputApp(t, m, dev, b, "com.example.fg", fgKey)
	sys := startOutputApp(t, m, dev, b, "com.example.sys", sysKey)

	// Before the device declares anything: unavailable, nothing queued.
	var pe *protocol.Error
	err := fg.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x")}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnavailable || pe.Details["reason"] != "device_unavailable" {
		t.Fatalf("request before declare: %v, want unavailable device_unavailable", err)
	}

	dev.declare(t, true, protocol.OutputSurface{Name: "main"}, protocol.OutputSurface{Name: "led"})
	if res := fg.request(t, protocol.OutputRequestParams{ID: "a", Surface: "main", Content: content("caption"), Restore: "on_resume"}); res.Priority != "foreground" {
		t.Fatalf("accepted %+v, want priority foreground", res)
	}
	fg.expect(t, "a queued boot")
	res := sys.request(t, protocol.OutputRequestParams{Surface: "hud", Content: content("?")})
	if !strings.HasPrefix(res.RequestID, "g") || res.Priority != "system" {
		t.Fatalf("accepted %+v, want a gateway id and priority system", res)
	}
	sys.expect(t, res.RequestID+" rejected unknown_surface final")
	quiet(t, "device", dev.cmds)

	var ready protocol.OutputReady
	if err := dev.c.Call(context.Background(), "output.ready", nil, &ready); err != nil || !ready.WasBooting {
		t.Fatalf("output.ready: %+v %v", ready, err)
	}
	dev.expect(t, `show main com.example.fg a {"text":"caption"}`)
	fg.expect(t, "a shown")

	// The system app preempts for 600 ms; the foreground request waits and
	// comes back.
	sys.request(t, protocol.OutputRequestParams{ID: "alert", Surface: "main", Content: content("battery low"), TTLMs: 600})
	dev.expect(t, `show main com.example.sys alert {"text":"battery low"}`)
	sys.expect(t, "alert shown")
	fg.expect(t, "a hidden preempted pending")
	dev.expect(t, `show main com.example.fg a {"text":"caption"}`)
	fg.expect(t, "a restored")
	sys.expect(t, "alert hidden expired final")

	// A duplicate live id is rejected; a cancel of another app's id does
	// nothing; the owner's cancel clears.
	fg.request(t, protocol.OutputRequestParams{ID: "l", Surface: "led", Content: content("on")})
	dev.expect(t, `show led com.example.fg l {"text":"on"}`)
	fg.expect(t, "l shown")
	var cancelled protocol.OutputCancelled
	if err := sys.c.Call(context.Background(), "output.cancel", protocol.OutputCancelParams{RequestID: "a"}, &cancelled); err != nil || cancelled.Found {
		t.Fatalf("another app's cancel: %+v %v, want not found", cancelled, err)
	}
	if err := fg.c.Call(context.Background(), "output.cancel", protocol.OutputCancelParams{RequestID: "a"}, &cancelled); err != nil || !cancelled.Found {
		t.Fatalf("cancel: %+v %v", cancelled, err)
	}
	dev.expect(t, "clear main")
	fg.expect(t, "a hidden cleared final")
	if err := fg.c.Call(context.Background(), "output.cancel", protocol.OutputCancelParams{Surface: "led"}, &cancelled); err != nil || !cancelled.Found {
		t.Fatalf("cancel by surface: %+v %v", cancelled, err)
	}
	dev.expect(t, "clear led")
	fg.expect(t, "l hidden cleared final")

	// A device may not request outputs, an app may not declare surfaces.
	if err := dev.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x")}, nil); !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Fatalf("device output.request: %v, want forbidden", err)
	}
	if err := fg.c.Call(context.Background(), "output.declare", protocol.OutputDeclareParams{Surfaces: []protocol.OutputSurface{{Name: "main"}}}, nil); !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Fatalf("app output.declare: %v, want forbidden", err)
	}
	// Bad params answer bad_request naming the field.
	for _, bad := range []protocol.OutputRequestParams{{Surface: "main"}, {Surface: "main", Content: content("x"), TTLMs: -1},
		{Surface: "main", Content: content("x"), Restore: "always"}, {ID: "a b", Surface: "main", Content: content("x")}} {
		if err := fg.c.Call(context.Background(), "output.request", bad, nil); !errors.As(err, &pe) || pe.Code != protocol.CodeBadRequest {
			t.Fatalf("output.request %+v: %v, want bad_request", bad, err)
		}
	}
	metrics := scrape(t, m)
	for _, w := range []string{`junction_output_events_total{kind="shown",reason=""} 3`, `junction_output_events_total{kind="rejected",reason="unknown_surface"} 1`,
		`junction_output_events_total{kind="queued",reason="boot"} 1`, `junction_output_events_total{kind="restored",reason=""} 1`} {
		if !strings.Contains(metrics, w) {
			t.Errorf("metrics lack %s", w)
		}
	}
}

// TestAppOutputThrottleTTL: inside the surface's minimum interval changes
// are coalesced (the waiting request hears queued throttle, one replaced
// meanwhile superseded) and only the last reaches the device when the
// interval ends; a TTL hides the content (expired) and clears the surface;
// force needs its scope, and with it skips the interval.
func TestAppOutputThrottleTTL(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	key := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput)
	dev := dialOutputDevice(t, m)
	fg := startOutputApp(t, m, dev, b, "com.example.fg", key)
	dev.declare(t, false, protocol.OutputSurface{Name: "main", MinIntervalMs: 1500})

	fg.request(t, protocol.OutputRequestParams{ID: "1", Surface: "main", Content: content("one")})
	dev.expect(t, `show main com.example.fg 1 {"text":"one"}`)
	fg.expect(t, "1 shown")
	fg.request(t, protocol.OutputRequestParams{ID: "2", Surface: "main", Content: content("two")})
	fg.expect(t, "2 queued throttle")
	fg.request(t, protocol.OutputRequestParams{ID: "3", Surface: "main", Content: content("three"), TTLMs: 2500})
	fg.expect(t, "2 superseded final", "3 queued throttle")
	dev.expect(t, `show main com.example.fg 3 {"text":"three"}`)
	fg.expect(t, "3 shown", "1 hidden superseded final")
	quiet(t, "device", dev.cmds)
	// Three's TTL ends 2.5 s after its request: the surface clears.
	dev.expect(t, "clear main")
	fg.expect(t, "3 hidden expired final")

	// Force without its scope is refused before the arbiter.
	var pe *protocol.Error
	err := fg.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x"), Force: true}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden || pe.Details["scope"] != protocol.ScopeOutputForce {
		t.Fatalf("force without scope: %v, want forbidden naming output.force", err)
	}
	quiet(t, fg.id, fg.status)
}

// TestAppOutputForce: an app granted output.force skips the interval.
func TestAppOutputForce(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	key := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput, protocol.ScopeOutputForce)
	dev := dialOutputDevice(t, m)
	fg := startOutputApp(t, m, dev, b, "com.example.fg", key)
	dev.declare(t, false, protocol.OutputSurface{Name: "main", MinIntervalMs: 60_000})
	fg.request(t, protocol.OutputRequestParams{ID: "1", Surface: "main", Content: content("one")})
	dev.expect(t, `show main com.example.fg 1 {"text":"one"}`)
	fg.expect(t, "1 shown")
	fg.request(t, protocol.OutputRequestParams{ID: "2", Surface: "main", Content: content("now"), Force: true})
	dev.expect(t, `show main com.example.fg 2 {"text":"now"}`)
	fg.expect(t, "2 shown", "1 hidden superseded final")
}

// TestAppOutputBackgroundLease: the background app whose output was last
// shown keeps another background app off the surface while it is active;
// the other is rejected busy with a retry-after, or (restore) waits and is
// shown once the holder has been idle for the lease.
func TestAppOutputBackgroundLease(t *testing.T) {
	m := outputServer(t, 800*time.Millisecond)
	b := newAppBackend(t)
	keyA := registerOutputApp(t, m, b, "com.example.bga", "background", "background", "read", protocol.ScopeOutput)
	keyB := registerOutputApp(t, m, b, "com.example.bgb", "background", "background", "read", protocol.ScopeOutput)
	dev := dialOutputDevice(t, m)
	bgA := startOutputApp(t, m, dev, b, "com.example.bga", keyA)
	bgB := startOutputApp(t, m, dev, b, "com.example.bgb", keyB)
	dev.declare(t, false, protocol.OutputSurface{Name: "main"})

	bgA.request(t, protocol.OutputRequestParams{ID: "x", Surface: "main", Content: content("weather")})
	dev.expect(t, `show main com.example.bga x {"text":"weather"}`)
	bgA.expect(t, "x shown")
	bgB.request(t, protocol.OutputRequestParams{ID: "y0", Surface: "main", Content: content("news")})
	bgB.expect(t, "y0 rejected busy retry final")
	bgB.request(t, protocol.OutputRequestParams{ID: "y", Surface: "main", Content: content("news"), Restore: "on_resume"})
	bgB.expect(t, "y queued busy")
	// The holder goes idle: after the lease, the waiting request takes over.
	dev.expect(t, `show main com.example.bgb y {"text":"news"}`)
	bgB.expect(t, "y shown")
	bgA.expect(t, "x hidden preempted final")
}

// TestAppOutputEnds: a lost output scope (the user narrows the grant)
// withdraws the session's outputs; uninstalling an app mid-output clears
// its surface before its socket hears app.stopped; a device that
// disconnects ends the rest with device_gone; an app without the output
// scope is refused.
func TestAppOutputEnds(t *testing.T) {
	m := outputServer(t, 0)
	b := newAppBackend(t)
	fgKey := registerOutputApp(t, m, b, "com.example.fg", "foreground", "foreground", "read", protocol.ScopeOutput)
	bgKey := registerOutputApp(t, m, b, "com.example.bg", "background", "background", "read", protocol.ScopeOutput)
	noKey := registerOutputApp(t, m, b, "com.example.none", "background", "ambient", "read")
	dev := dialOutputDevice(t, m)
	fg := startOutputApp(t, m, dev, b, "com.example.fg", fgKey)
	bg := startOutputApp(t, m, dev, b, "com.example.bg", bgKey)
	none := startOutputApp(t, m, dev, b, "com.example.none", noKey)
	dev.declare(t, false, protocol.OutputSurface{Name: "main"}, protocol.OutputSurface{Name: "led"})

	var pe *protocol.Error
	err := none.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x")}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden || pe.Details["scope"] != protocol.ScopeOutput {
		t.Fatalf("request without the output scope: %v, want forbidden naming output", err)
	}

	fg.request(t, protocol.OutputRequestParams{ID: "a", Surface: "main", Content: content("fg")})
	dev.expect(t, `show main com.example.fg a {"text":"fg"}`)
	fg.expect(t, "a shown")
	bg.request(t, protocol.OutputRequestParams{ID: "b", Surface: "main", Content: content("bg"), Restore: "on_resume"})
	bg.expect(t, "b queued busy")
	bg.request(t, protocol.OutputRequestParams{ID: "l", Surface: "led", Content: content("blink")})
	dev.expect(t, `show led com.example.bg l {"text":"blink"}`)
	bg.expect(t, "l shown")

	// The user narrows fg's grant to read: its output goes, bg's waits no more.
	apiJSON(t, m, outputUserTok(t, m), "PUT", "/api/v1/apps/com.example.fg/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	dev.expect(t, `show main com.example.bg b {"text":"bg"}`)
	bg.expect(t, "b shown")
	fg.expect(t, "a hidden cleared final")
	err = fg.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x")}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Fatalf("request after the scope was revoked: %v, want forbidden", err)
	}

	// Uninstall bg mid-output: both its outputs end (cleared) before
	// app.stopped, and the device clears both surfaces.
	apiJSON(t, m, outputUserTok(t, m), "DELETE", "/api/v1/apps/com.example.bg/install", nil, 200, nil)
	got := []string{nextLine(t, "bg", bg.status), nextLine(t, "bg", bg.status)}
	if strings.Join(sortedCopy(got), "|") != "b hidden cleared final|l hidden cleared final" {
		t.Fatalf("bg after uninstall: %q", got)
	}
	select {
	case s := <-bg.stopped:
		if s.Reason != protocol.StopPermissionRevoked {
			t.Fatalf("app.stopped %+v", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no app.stopped")
	}
	cmds := []string{nextLine(t, "device", dev.cmds), nextLine(t, "device", dev.cmds)}
	if strings.Join(sortedCopy(cmds), "|") != "clear led|clear main" {
		t.Fatalf("device after uninstall: %q", cmds)
	}
	b.next("session.stop")

	// The device disconnects while a request is shown: it ends with
	// device_gone, and a later request finds no surfaces.
	sysKey := registerOutputApp(t, m, b, "com.example.sys", "background", "system", "read", protocol.ScopeOutput)
	sys := startOutputApp(t, m, dev, b, "com.example.sys", sysKey)
	sys.request(t, protocol.OutputRequestParams{ID: "s", Surface: "main", Content: content("sys")})
	dev.expect(t, `show main com.example.sys s {"text":"sys"}`)
	sys.expect(t, "s shown")
	_ = dev.c.Close()
	sys.expect(t, "s hidden device_gone final")
	err = sys.c.Call(context.Background(), "output.request", protocol.OutputRequestParams{Surface: "main", Content: content("x")}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeUnavailable {
		t.Fatalf("request with the device gone: %v, want unavailable", err)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
