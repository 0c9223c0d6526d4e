package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/apps"
	"github.com/junctionhq/junction/protocol"
)

// Issue 13, item 5 (recovery of app sessions), end to end: the real
// server, a real app backend on loopback (appBackend) and simulated
// devices on real WebSockets. The recovery timers run on the server's
// clock, which the tests move (advance) instead of sleeping; the loop
// checks them every 10 ms.

const testGrace = 30 * time.Second

// recoveryServer starts a server for the recovery tests: data in dir
// (a fresh one when empty), fast webhook retries, a breaker that opens
// after three failed attempts for 90 s, a 10 s connect deadline; then
// configure, when not nil. The server's clock signs the webhooks, and the
// app backend verifies them on the wall clock with the standard 5 min
// tolerance: a test moves time by less than that in all.
func recoveryServer(t *testing.T, dir string, configure func(*Config)) (*Main, func(time.Duration)) {
	t.Helper()
	m, advance, _ := appsServerWith(t, func(c *Config) {
		if dir != "" {
			c.Data = dir
		}
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.WebhookTimeout = 2 * time.Second
		c.Apps.BreakerThreshold = 3
		c.Apps.BreakerOpen = 90 * time.Second
		c.Apps.ConnectTimeout = 10 * time.Second
		c.Apps.Grace = testGrace
		c.Apps.RecoveryInterval = 10 * time.Millisecond
		if configure != nil {
			configure(c)
		}
	})
	return m, advance
}

// recoveryEvents reads junction_app_session_recovery_total{event} from
// /metrics.
func recoveryEvents(t *testing.T, m *Main, event string) int {
	t.Helper()
	resp, err := http.Get(m.URL() + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	prefix := `junction_app_session_recovery_total{event="` + event + `"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", sc.Text(), err)
			}
			return int(n)
		}
	}
	t.Fatalf("/metrics has no %s", prefix)
	return 0
}

// sessionsIn lists an app's sessions in state with its key.
func sessionsIn(t *testing.T, m *Main, key, appID, state string) []protocol.AppSession {
	t.Helper()
	var list protocol.AppSessionList
	apiJSON(t, m, key, "GET", "/api/v1/apps/"+appID+"/sessions?state="+state, nil, 200, &list)
	return list.Sessions
}

// waitSessionIn waits until the app's session id is in state (as the
// app sees it over REST) and returns it.
func waitSessionIn(t *testing.T, m *Main, key, appID, id, state string) protocol.AppSession {
	t.Helper()
	var out protocol.AppSession
	eventually(t, "session "+id+" "+state, func() bool {
		for _, s := range sessionsIn(t, m, key, appID, state) {
			if s.ID == id {
				out = s
				return true
			}
		}
		return false
	})
	return out
}

// resumeApp dials as the app with its key and a resume token.
func resumeApp(t *testing.T, m *Main, key, token string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: key, Header: http.Header{apps.ResumeHeader: {token}}}))
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// helloOf calls apps.hello on an app connection.
func helloOf(t *testing.T, c *client.Client, appID, id string) protocol.AppHello {
	t.Helper()
	var h protocol.AppHello
	if err := c.Call(context.Background(), "apps.hello", protocol.AppSessionRef{AppID: appID, SessionID: id}, &h); err != nil {
		t.Fatalf("apps.hello %s: %v", id, err)
	}
	return h
}

// TestAppRecoverGrace: the app's connection drops; the session waits in
// transport_down (the device is told, with the end of grace); the app
// reattaches with its resume token inside grace and gets its session back
// as it was, with no new session.start and nothing resent.
func TestAppRecoverGrace(t *testing.T) {
	m, advance := recoveryServer(t, "", nil)
	b := newAppBackend(t)
	const appID = "com.example.grace"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, appID, "display")
	app := connectApp(t, m, key, b.next("session.start"))
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	before := helloOf(t, app.c, appID, st.Session.ID)

	_ = app.c.Close()
	down := dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	if down.NextAt == nil || down.NextAt.Sub(down.UpdatedAt) < testGrace-time.Second || down.NextAt.Sub(down.UpdatedAt) > testGrace+time.Second {
		t.Fatalf("transport_down %+v: want nextAt at the end of a %s grace", down, testGrace)
	}
	advance(testGrace - 5*time.Second) // still inside grace
	c := resumeApp(t, m, key, before.ResumeToken)
	running := dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	if running.NextAt != nil || running.Attempts != 0 || running.Stage != "" {
		t.Fatalf("resumed %+v: want no timer, attempt or failure", running)
	}
	after := helloOf(t, c, appID, st.Session.ID)
	if after.SessionID != before.SessionID || after.UserID != before.UserID || fmt.Sprint(after.Scopes) != fmt.Sprint(before.Scopes) ||
		fmt.Sprint(after.Subscriptions) != fmt.Sprint(before.Subscriptions) || after.Priority != before.Priority {
		t.Fatalf("hello after the resume %+v, before %+v: want the same session", after, before)
	}
	if _, _, accepted := b.counts(); accepted != 1 {
		t.Fatalf("webhooks %d: want only the first session.start", accepted)
	}
	if n := recoveryEvents(t, m, "resumed"); n != 1 {
		t.Fatalf("resumed events %d, want 1", n)
	}
	// The grace ended with the resume: no timer is left to start anything.
	if ss, err := m.Store.AppSessionByID(context.Background(), st.Session.ID); err != nil || !ss.DueAt.IsZero() || ss.State != protocol.AppStateRunning {
		t.Fatalf("resumed session in the store %+v, %v: want running with no timer", ss, err)
	}
}

// TestAppRecoverResurrection: grace ends with the device online: the
// session goes resurrecting and the app gets session.start with resumed:
// true, the same session id and a new ticket (the old one is dead); it
// connects with it and the session runs. An app whose server restarts
// while its session is resurrecting pulls it and resumes with its token
// (the pending ticket is then refused). Then an app that accepts but
// never connects: attempts follow the schedule until the budget runs out,
// and the session stops with app_error at stage timeout, which the device
// sees; session.stop follows.
func TestAppRecoverResurrection(t *testing.T) {
	const budget = 40 * time.Second
	m, advance := recoveryServer(t, "", func(c *Config) { c.Apps.ResurrectionBudget = budget })
	b := newAppBackend(t)
	const appID = "com.example.phoenix"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, appID, "display")
	first := b.next("session.start")
	app := connectApp(t, m, key, first)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)

	_ = app.c.Close()
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	advance(testGrace + time.Second)
	if s := dev.wait(t, st.Session.ID, protocol.AppStateResurrecting); s.NextAt == nil {
		t.Fatalf("resurrecting %+v: want nextAt", s)
	}
	hook := b.next("session.start")
	if hook["resumed"] != true || hook["sessionId"] != st.Session.ID || hook["ticket"] == first["ticket"] || hook["userId"] != first["userId"] {
		t.Fatalf("resurrection %v (first %v): want resumed, the same session and user, a new ticket", hook, first)
	}
	if code, e := wsHandshake(t, m, key, apps.TicketHeader, first["ticket"].(string)); code != 401 || e.Error.Details["reason"] != "ticket_invalid" {
		t.Fatalf("the first ticket after a resurrection: %d %+v, want 401 ticket_invalid", code, e.Error)
	}
	app = connectApp(t, m, key, hook)
	if s := dev.wait(t, st.Session.ID, protocol.AppStateRunning); s.Attempts != 0 || s.NextAt != nil {
		t.Fatalf("resurrected %+v: want the attempts cleared", s)
	}
	h := helloOf(t, app.c, appID, st.Session.ID)
	if h.SessionID != st.Session.ID {
		t.Fatalf("hello of the resurrected session %+v", h)
	}

	// The app's server restarts while its session is resurrecting: it
	// pulls it (state=resurrecting) and resumes with its token; the
	// pending resurrection ticket is then refused.
	_ = app.c.Close()
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	advance(testGrace + time.Second)
	pending := b.next("session.start")
	if list := sessionsIn(t, m, key, appID, protocol.AppStateResurrecting); len(list) != 1 || list[0].ID != st.Session.ID || list[0].Attempts != 1 {
		t.Fatalf("resurrecting sessions %+v: want the session after one attempt", list)
	}
	app = &appConn{c: resumeApp(t, m, key, h.ResumeToken)}
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	if code, e := wsHandshake(t, m, key, apps.TicketHeader, pending["ticket"].(string)); code != 409 || e.Error.Details["reason"] != "session_resumed" {
		t.Fatalf("the pending resurrection ticket after a resume: %d %+v, want 409 session_resumed", code, e.Error)
	}

	// Accepted, never connected: each attempt waits the connect deadline
	// (10 s) before the next.
	_ = app.c.Close()
	dev.wait(t, st.Session.ID, protocol.AppStateTransportDown)
	advance(testGrace + time.Second)
	if h := b.next("session.start"); h["resumed"] != true {
		t.Fatalf("attempt 1 %v", h)
	}
	eventually(t, "attempt 1 accepted", func() bool { return recoveryEvents(t, m, "accepted") == 3 })
	advance(11 * time.Second)
	if h := b.next("session.start"); h["resumed"] != true {
		t.Fatalf("attempt 2 %v", h)
	}
	s := dev.wait(t, st.Session.ID, protocol.AppStateResurrecting)
	for s.Attempts != 2 {
		s = dev.wait(t, st.Session.ID, protocol.AppStateResurrecting)
	}
	if s.Stage != protocol.StageTimeout {
		t.Fatalf("attempt 2 %+v: want the previous one's failure, stage timeout", s)
	}
	eventually(t, "attempt 2 accepted", func() bool { return recoveryEvents(t, m, "accepted") == 4 })
	advance(budget - 10*time.Second) // past the budget
	stopped := dev.wait(t, st.Session.ID, protocol.AppStateStopped)
	if stopped.StopReason != protocol.StopAppError || stopped.Stage != protocol.StageTimeout || !strings.Contains(stopped.Error, "gave up after 2 attempt") {
		t.Fatalf("given up %+v: want app_error at stage timeout after 2 attempts", stopped)
	}
	if h := b.next("session.stop"); h["sessionId"] != st.Session.ID || h["reason"] != protocol.StopAppError {
		t.Fatalf("session.stop %v", h)
	}
	if n := recoveryEvents(t, m, "gave_up"); n != 1 {
		t.Fatalf("gave_up %d, want 1", n)
	}
}

// TestAppRecoverBreakerCoalesces: one app server, four devices' sessions,
// and the server goes down. The first attempts open the app's breaker;
// from then on the schedule's steps send nothing (held) however many
// sessions wait; when the breaker's period ends one attempt probes, and
// once it is accepted the others go at once.
func TestAppRecoverBreakerCoalesces(t *testing.T) {
	m, advance := recoveryServer(t, "", nil)
	b := newAppBackend(t)
	const appID = "com.example.fleet"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	const n = 4
	devs := make([]*device, n)
	ids := make([]string, n)
	conns := make([]*appConn, n)
	for i := range n {
		devs[i] = dialDevice(t, m, "u1", fmt.Sprintf("u1-glasses-%d", i))
		ids[i] = devs[i].start(t, appID, "display").Session.ID
		conns[i] = connectApp(t, m, key, b.next("session.start"))
		devs[i].wait(t, ids[i], protocol.AppStateRunning)
	}
	// The app's server dies: every webhook answers 503 from now on.
	down := make([]int, 200)
	for i := range down {
		down[i] = http.StatusServiceUnavailable
	}
	b.answer(down...)
	for i := range n {
		_ = conns[i].c.Close()
		devs[i].wait(t, ids[i], protocol.AppStateTransportDown)
	}
	requests0, _, _ := b.counts()
	advance(testGrace + time.Second)
	for i := range n {
		devs[i].wait(t, ids[i], protocol.AppStateResurrecting)
	}
	// The first attempts go together; the breaker opens after three
	// failures. An attempt decided after the first failure came back
	// waits for a probe instead (held).
	eventually(t, "the first attempts fail", func() bool {
		f := recoveryEvents(t, m, "failed")
		return f >= 3 && f+recoveryEvents(t, m, "held") >= n
	})
	requests1, _, _ := b.counts()
	if sent := requests1 - requests0; sent < 3 || sent > n {
		t.Fatalf("first step: %d webhook requests, want 3..%d (the breaker opens after 3)", sent, n)
	}
	// The schedule's next steps (2, 5, 10, 20, 40 s): the breaker is
	// open; every due attempt waits for it instead of reaching the server.
	held := 0
	for _, step := range []time.Duration{2, 3, 5, 10, 20} {
		advance(step * time.Second)
		if step == 2 {
			eventually(t, "the due attempts wait for the breaker", func() bool { return recoveryEvents(t, m, "held") >= n })
			held = recoveryEvents(t, m, "held")
		}
	}
	if requests2, _, _ := b.counts(); requests2 != requests1 {
		t.Fatalf("while the breaker is open: %d more webhook requests, want 0 (held %d)", requests2-requests1, held)
	}

	// The server is back; the breaker's period ends: one probe, then the rest.
	b.mu.Lock()
	b.statuses = nil
	b.mu.Unlock()
	advance(60 * time.Second)
	seen := map[string]bool{}
	for range n {
		h := b.next("session.start")
		id, _ := h["sessionId"].(string)
		if h["resumed"] != true || seen[id] {
			t.Fatalf("resurrection %v (seen %v)", h, seen)
		}
		seen[id] = true
		connectApp(t, m, key, h)
	}
	for i := range n {
		devs[i].wait(t, ids[i], protocol.AppStateRunning)
	}
	requests3, _, _ := b.counts()
	if got := requests3 - requests1; got != n {
		t.Fatalf("after the breaker's period: %d webhook requests, want %d (one probe, then the other sessions)", got, n)
	}
}

// TestAppRecoverDormantDevices: the sessions of several devices went
// dormant; the devices come back one right after another (the node reads
// the dormant sessions of the devices that queued up meanwhile in one
// query): each session is revived, once.
func TestAppRecoverDormantDevices(t *testing.T) {
	m, advance := recoveryServer(t, "", nil)
	b := newAppBackend(t)
	const appID = "com.example.sleepers"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	const n = 3
	name := func(i int) string { return fmt.Sprintf("u1-glasses-%d", i) }
	ids := make([]string, n)
	devs := make([]*device, n)
	conns := make([]*appConn, n)
	for i := range n {
		devs[i] = dialDevice(t, m, "u1", name(i))
		ids[i] = devs[i].start(t, appID, "display").Session.ID
		conns[i] = connectApp(t, m, key, b.next("session.start"))
		devs[i].wait(t, ids[i], protocol.AppStateRunning)
	}
	for i := range n {
		_ = devs[i].c.Close()
		eventually(t, "the device is offline", func() bool { return m.Hub.ConnOfDevice(name(i)) == nil })
	}
	for i := range n {
		_ = conns[i].c.Close()
		waitSessionIn(t, m, key, appID, ids[i], protocol.AppStateTransportDown)
	}
	advance(testGrace + time.Second)
	for i := range n {
		waitSessionIn(t, m, key, appID, ids[i], protocol.AppStateDormant)
	}

	for i := range n {
		devs[i] = dialDevice(t, m, "u1", name(i))
	}
	revived := map[string]bool{}
	for range n {
		hook := b.next("session.start")
		id, _ := hook["sessionId"].(string)
		if hook["resumed"] != true || revived[id] {
			t.Fatalf("revival %v (revived before: %v)", hook, revived)
		}
		revived[id] = true
	}
	for _, id := range ids {
		if !revived[id] {
			t.Fatalf("session %s not revived (revived: %v)", id, revived)
		}
	}
	if got := recoveryEvents(t, m, "revived"); got != n {
		t.Fatalf("revived %d, want %d", got, n)
	}
}

// TestAppRecoverDormant: the device goes offline, then the app's
// connection drops: at the end of grace the session goes dormant and no
// webhook is sent; the device's return revives it (a resurrection). A
// resurrecting session whose device goes away goes dormant at its next
// attempt instead of making it. The app's server restarting while a
// session is dormant pulls it (state=dormant) and reattaches with its
// resume token. A device that stays away apps.dormant_limit stops the
// session with device_gone.
func TestAppRecoverDormant(t *testing.T) {
	const limit = 2 * time.Minute
	m, advance := recoveryServer(t, "", func(c *Config) { c.Apps.DormantLimit = limit })
	b := newAppBackend(t)
	const appID = "com.example.sleepy"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	dev := dialDevice(t, m, "u1", "u1-glasses")
	id := dev.start(t, appID, "display").Session.ID
	app := connectApp(t, m, key, b.next("session.start"))
	dev.wait(t, id, protocol.AppStateRunning)

	goDormant := func() protocol.AppSession {
		t.Helper()
		_ = app.c.Close()
		waitSessionIn(t, m, key, appID, id, protocol.AppStateTransportDown)
		advance(testGrace + time.Second)
		s := waitSessionIn(t, m, key, appID, id, protocol.AppStateDormant)
		if s.NextAt == nil || s.NextAt.Sub(s.UpdatedAt) < limit-time.Second {
			t.Fatalf("dormant %+v: want nextAt %s away (device_gone)", s, limit)
		}
		return s
	}
	_ = dev.c.Close()
	eventually(t, "the device is offline", func() bool { return m.Hub.ConnOfDevice("u1-glasses") == nil })
	_, _, accepted := b.counts()
	goDormant()
	if _, _, now := b.counts(); now != accepted {
		t.Fatalf("dormant: %d webhooks sent, want none", now-accepted)
	}

	// The device is back: the session is resurrected.
	// (Its app.session resurrecting may come before the client has its
	// handler: the webhook is the observable.)
	dev = dialDevice(t, m, "u1", "u1-glasses")
	hook := b.next("session.start")
	if hook["resumed"] != true || hook["sessionId"] != id {
		t.Fatalf("revival %v", hook)
	}
	app = connectApp(t, m, key, hook)
	dev.wait(t, id, protocol.AppStateRunning)
	token := helloOf(t, app.c, appID, id).ResumeToken
	if n := recoveryEvents(t, m, "revived"); n != 1 {
		t.Fatalf("revived %d, want 1", n)
	}

	// The app's server is down and the device online: the session is
	// resurrecting (the first attempt fails); then the device goes away:
	// the next attempt is not made, the session goes dormant. The app's
	// server comes back: it pulls its dormant sessions and reattaches.
	b.answer(http.StatusServiceUnavailable)
	_ = app.c.Close()
	dev.wait(t, id, protocol.AppStateTransportDown)
	advance(testGrace + time.Second)
	dev.wait(t, id, protocol.AppStateResurrecting)
	eventually(t, "the attempt failed", func() bool { return recoveryEvents(t, m, "failed") == 1 })
	requests, _, _ := b.counts()
	_ = dev.c.Close()
	eventually(t, "the device is offline", func() bool { return m.Hub.ConnOfDevice("u1-glasses") == nil })
	advance(2 * time.Second)
	waitSessionIn(t, m, key, appID, id, protocol.AppStateDormant)
	if now, _, _ := b.counts(); now != requests {
		t.Fatalf("dormant: %d more webhook requests, want none", now-requests)
	}
	if list := sessionsIn(t, m, key, appID, protocol.AppStateDormant); len(list) != 1 || list[0].ID != id {
		t.Fatalf("dormant sessions %+v", list)
	}
	c := resumeApp(t, m, key, token)
	waitSessionIn(t, m, key, appID, id, protocol.AppStateRunning)
	app = &appConn{c: c}
	_ = helloOf(t, c, appID, id)

	// Dormant once more, and the device never returns.
	goDormant()
	advance(limit + time.Second)
	stopped := waitSessionIn(t, m, key, appID, id, protocol.AppStateStopped)
	if stopped.StopReason != protocol.StopDeviceGone {
		t.Fatalf("stopped %+v, want device_gone", stopped)
	}
	if h := b.next("session.stop"); h["sessionId"] != id || h["reason"] != protocol.StopDeviceGone {
		t.Fatalf("session.stop %v", h)
	}
}

// TestAppRecoverGatewayRestart: the gateway restarts on the same data
// directory with three sessions: A running, B in transport_down, C
// starting (session.start accepted, the app never connects). The new
// process claims them (a new epoch); A, whose app lost its connection
// with the old process, waits in transport_down and its app resumes; B's
// grace, stored by the old process, ends on time and B is resurrected; C's
// connect deadline, stored too, fails it at stage timeout.
func TestAppRecoverGatewayRestart(t *testing.T) {
	dir := t.TempDir()
	m, _ := recoveryServer(t, dir, nil)
	b := newAppBackend(t)
	const appID = "com.example.sturdy"
	key := registerApp(t, m, b, appID, "foreground", true, "u1").Key.Key
	start := func(m *Main, dev string) (string, *appConn) {
		d := dialDevice(t, m, "u1", dev)
		id := d.start(t, appID, "display").Session.ID
		a := connectApp(t, m, key, b.next("session.start"))
		d.wait(t, id, protocol.AppStateRunning)
		return id, a
	}
	idA, appA := start(m, "u1-a")
	tokenA := helloOf(t, appA.c, appID, idA).ResumeToken
	idB, appB := start(m, "u1-b")
	_ = appB.c.Close()
	waitSessionIn(t, m, key, appID, idB, protocol.AppStateTransportDown)
	devC := dialDevice(t, m, "u1", "u1-c")
	idC := devC.start(t, appID, "display").Session.ID
	b.next("session.start")
	eventually(t, "C's connect deadline stored", func() bool {
		ss, err := m.Store.AppSessionByID(context.Background(), idC)
		return err == nil && !ss.DueAt.IsZero() && ss.DueAt.Before(time.Now().Add(11*time.Second))
	})
	epochs := map[string]int64{}
	for _, id := range []string{idA, idB, idC} {
		ss, err := m.Store.AppSessionByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		epochs[id] = ss.Epoch
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	m2, advance := recoveryServer(t, dir, nil)
	for _, id := range []string{idA, idB, idC} {
		ss, err := m2.Store.AppSessionByID(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if ss.Epoch <= epochs[id] || ss.Node != m2.Hub.NodeID() {
			t.Fatalf("session %s after the restart: epoch %d (was %d), node %q (this %q): want claimed", id, ss.Epoch, epochs[id], ss.Node, m2.Hub.NodeID())
		}
		if id != idC && ss.State != protocol.AppStateTransportDown {
			t.Fatalf("session %s after the restart: %s, want transport_down", id, ss.State)
		}
	}

	// A: the device and the app come back; the app resumes.
	devA := dialDevice(t, m2, "u1", "u1-a")
	c := resumeApp(t, m2, key, tokenA)
	devA.wait(t, idA, protocol.AppStateRunning)
	if h := helloOf(t, c, appID, idA); h.SessionID != idA {
		t.Fatalf("hello after the restart %+v", h)
	}

	// B and C: their timers, stored by the old process, run in the new one.
	devB := dialDevice(t, m2, "u1", "u1-b")
	advance(testGrace + time.Second)
	devB.wait(t, idB, protocol.AppStateResurrecting)
	hooks := b.nextEach("session.start", "session.stop")
	if h := hooks["session.start"]; h["resumed"] != true || h["sessionId"] != idB {
		t.Fatalf("B's resurrection %v", h)
	}
	if h := hooks["session.stop"]; h["sessionId"] != idC {
		t.Fatalf("session.stop %v, want C's", h)
	}
	connectApp(t, m2, key, hooks["session.start"])
	devB.wait(t, idB, protocol.AppStateRunning)
	stoppedC := waitSessionIn(t, m2, key, appID, idC, protocol.AppStateStopped)
	if stoppedC.Stage != protocol.StageTimeout || stoppedC.StopReason != protocol.StopAppError {
		t.Fatalf("C after its deadline %+v: want app_error at stage timeout", stoppedC)
	}
	// A was not touched by the advance: it runs.
	waitSessionIn(t, m2, key, appID, idA, protocol.AppStateRunning)
}
