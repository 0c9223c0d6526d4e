package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/internal/apps"
	"github.com/junctionhq/junction/protocol"
)

// Issue 13, item 6, end to end: device streams between a simulated device
// and an app backend's session connection, both bare WebSocket clients
// (the device sends binary stream frames; the app reads them), every text
// frame checked against the served contract.

// streamMsg is one message read from a streamConn: a protocol frame, a
// binary message, or the close (code; -1 when the socket just ended).
type streamMsg struct {
	f     *protocol.Frame
	bin   []byte
	close int
}

// streamConn is a bare WebSocket client whose reader runs on its own
// goroutine (and can be paused, so that the server sees a slow consumer).
type streamConn struct {
	*rawConn
	t      *testing.T
	wmu    sync.Mutex // serializes writes (the reader answers pings)
	msgs   chan streamMsg
	held   []streamMsg // read by next before msgs: what call passed over
	nextID int

	paused  atomic.Bool
	resume  chan struct{}
	welcome atomic.Pointer[protocol.Welcome] // set by the reader
}

// dialStream dials /ws with header; readBuffer > 0 shrinks the client's
// socket receive buffer (a slow consumer fills up sooner).
func dialStream(t *testing.T, m *Main, header http.Header, readBuffer int) (*streamConn, error) {
	t.Helper()
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(header), Timeout: 5 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil && readBuffer > 0 {
				_ = nc.(*net.TCPConn).SetReadBuffer(readBuffer)
			}
			return nc, err
		}}
	nc, br, _, err := d.Dial(context.Background(), m.WSURL()+"/ws")
	if err != nil {
		return nil, err
	}
	rc := &rawConn{t: t, cc: wireCheckOf(m).conn(true), nc: nc, r: nc}
	if br != nil {
		rc.r = io.MultiReader(br, nc)
	}
	t.Cleanup(func() { nc.Close() })
	c := &streamConn{rawConn: rc, t: t, msgs: make(chan streamMsg, 1<<16), resume: make(chan struct{})}
	go c.read()
	return c, nil
}

func mustDialStream(t *testing.T, m *Main, header http.Header, readBuffer int) *streamConn {
	t.Helper()
	c, err := dialStream(t, m, header, readBuffer)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func (c *streamConn) read() {
	for {
		if c.paused.Load() {
			<-c.resume
		}
		h, err := ws.ReadHeader(c.r)
		if err != nil {
			c.msgs <- streamMsg{close: -1}
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.r, payload); err != nil {
			c.msgs <- streamMsg{close: -1}
			return
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(payload)
			c.write(ws.OpClose, payload)
			c.msgs <- streamMsg{close: int(code)}
			return
		case ws.OpPing:
			c.write(ws.OpPong, payload)
		case ws.OpBinary:
			c.msgs <- streamMsg{bin: payload}
		case ws.OpText:
			c.cc.message(false, payload)
			protocol.Split(payload, func(b []byte) {
				f, err := protocol.Decode(append([]byte(nil), b...))
				if err != nil {
					c.t.Errorf("server sent an invalid frame %s: %v", b, err)
					return
				}
				if f.Type == protocol.TypeEvent && f.Event == protocol.EventWelcome {
					var w protocol.Welcome
					if err := json.Unmarshal(f.Data, &w); err == nil {
						c.welcome.Store(&w)
					}
				}
				c.msgs <- streamMsg{f: f}
			})
		}
	}
}

func (c *streamConn) write(op ws.OpCode, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsutil.WriteClientMessage(c.nc, op, b)
}

// pause stops reading after the message being read; unpause reads on.
func (c *streamConn) pause()   { c.paused.Store(true) }
func (c *streamConn) unpause() { c.paused.Store(false); close(c.resume) }

// next returns the next message.
func (c *streamConn) next() streamMsg {
	c.t.Helper()
	if len(c.held) > 0 {
		m := c.held[0]
		c.held = c.held[1:]
		return m
	}
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		c.t.Fatal("no message within 10s")
	}
	return streamMsg{}
}

// call sends a request and returns its response; messages before it are
// held for next.
func (c *streamConn) call(method string, params any) *protocol.Frame {
	c.t.Helper()
	c.nextID++
	id := strconv.Itoa(c.nextID)
	raw, err := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	if err != nil {
		c.t.Fatal(err)
	}
	c.cc.message(true, raw)
	if err := c.write(ws.OpText, raw); err != nil {
		c.t.Fatalf("send %s: %v", method, err)
	}
	var held []streamMsg
	defer func() { c.held = append(c.held, held...) }()
	for {
		select {
		case m := <-c.msgs:
			if m.f != nil && m.f.Type == protocol.TypeResponse && m.f.ID == id {
				return m.f
			}
			if m.close != 0 {
				c.t.Fatalf("%s: connection closed (%d)", method, m.close)
			}
			held = append(held, m)
		case <-time.After(10 * time.Second):
			c.t.Fatalf("no answer to %s", method)
		}
	}
}

// result calls and decodes the result, failing on an error.
func (c *streamConn) result(method string, params, out any) {
	c.t.Helper()
	f := c.call(method, params)
	if !f.OK {
		c.t.Fatalf("%s: %+v", method, f.Error)
	}
	if out != nil {
		if err := json.Unmarshal(f.Result, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

// callErr calls and returns the error, failing on success.
func (c *streamConn) callErr(method string, params any) *protocol.Error {
	c.t.Helper()
	f := c.call(method, params)
	if f.OK {
		c.t.Fatalf("%s answered %s, want an error", method, f.Result)
	}
	return f.Error
}

// event returns the next event named name, skipping others (and binary).
func (c *streamConn) event(name string) *protocol.Frame {
	c.t.Helper()
	for {
		m := c.next()
		if m.close != 0 {
			c.t.Fatalf("closed (%d) waiting for %s", m.close, name)
		}
		if m.f != nil && m.f.Type == protocol.TypeEvent && m.f.Event == name {
			return m.f
		}
	}
}

// streamMessage returns the next stream.event, stream.gap or binary
// message, skipping other messages.
func (c *streamConn) streamMessage() streamMsg {
	c.t.Helper()
	for {
		m := c.next()
		switch {
		case m.close != 0:
			c.t.Fatalf("closed (%d) waiting for a stream message", m.close)
		case m.bin != nil:
			return m
		case m.f != nil && m.f.Type == protocol.TypeEvent && (m.f.Event == protocol.EventStream || m.f.Event == protocol.EventStreamGap):
			return m
		}
	}
}

func (c *streamConn) streamEvent() protocol.StreamEvent {
	c.t.Helper()
	m := c.streamMessage()
	if m.f == nil || m.f.Event != protocol.EventStream {
		c.t.Fatalf("got %+v, want a stream.event", m)
	}
	var ev protocol.StreamEvent
	if err := json.Unmarshal(m.f.Data, &ev); err != nil {
		c.t.Fatal(err)
	}
	return ev
}

func (c *streamConn) demand() []string {
	c.t.Helper()
	var d protocol.StreamDemand
	if err := json.Unmarshal(c.event(protocol.EventStreamDemand).Data, &d); err != nil {
		c.t.Fatal(err)
	}
	return d.Streams
}

// closeCode waits for the server's close and returns its code.
func (c *streamConn) closeCode() int {
	c.t.Helper()
	for {
		if m := c.next(); m.close != 0 {
			return m.close
		}
	}
}

func (c *streamConn) sendBinary(stream string, seq uint32, payload []byte) {
	c.t.Helper()
	if err := c.write(ws.OpBinary, protocol.AppendStreamFrame(nil, stream, seq, payload)); err != nil {
		c.t.Fatalf("send binary: %v", err)
	}
}

// streamEnv is a server, an app with stream scopes installed by u1, u1's
// glasses and the app's running session connection.
type streamEnv struct {
	m       *Main
	b       *appBackend
	key     string
	secret  string // the app's webhook secret
	dev     *streamConn
	app     *streamConn
	session string
	hello   protocol.AppHello
}

const streamApp = "com.example.captions"

func streamSetup(t *testing.T, configure func(*Config), appReadBuffer int) *streamEnv {
	t.Helper()
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		if configure != nil {
			configure(c)
		}
	})
	e := &streamEnv{m: m, b: newAppBackend(t)}
	created := createApp(t, m, map[string]any{"id": streamApp, "name": "Captions", "kind": "foreground", "internal": true,
		"scopes":     []string{"read", "stream:transcript", "stream:audio", "stream:location", "stream:battery"},
		"webhookUrl": e.b.srv.URL + "/hooks"})
	e.secret = created.WebhookSecret.Secret
	e.b.setSecrets(e.secret)
	e.key = created.Key.Key
	// A plain user grants stream scopes (consent to their own device's
	// data), but not battery here.
	e.install(t, "read", "stream:transcript", "stream:audio", "stream:location")

	e.dev = mustDialStream(t, m, bearer(mintToken(t, m, "u1", "u1-glasses", "glasses")), 0)
	var st protocol.AppSessionStarted
	e.dev.result("apps.startSession", protocol.AppSessionStartParams{AppID: streamApp}, &st)
	hook := e.b.next("session.start")
	e.session = st.Session.ID
	e.app = mustDialStream(t, m, http.Header{"Authorization": {"Bearer " + e.key}, apps.TicketHeader: {hook["ticket"].(string)}}, appReadBuffer)
	e.app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &e.hello)
	return e
}

func (e *streamEnv) install(t *testing.T, scopes ...string) {
	t.Helper()
	apiJSON(t, e.m, mintToken(t, e.m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/"+streamApp+"/install", map[string]any{"scopes": scopes}, 200, nil)
}

func (e *streamEnv) set(t *testing.T, seq uint64, streams ...string) protocol.StreamSet {
	t.Helper()
	var out protocol.StreamSet
	e.app.result("streams.set", protocol.StreamSetParams{AppID: streamApp, SessionID: e.session, Seq: seq, Streams: nonNilStrings(streams)}, &out)
	return out
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (e *streamEnv) publish(t *testing.T, stream string, data any) protocol.StreamPublished {
	t.Helper()
	raw, _ := json.Marshal(data)
	var out protocol.StreamPublished
	e.dev.result("streams.publish", protocol.StreamPublishParams{Stream: stream, Data: raw}, &out)
	return out
}

// TestAppStreamsSubscribeAndDeliver: streams.set is answered with granted
// and rejected (invalid, unknown, missing scope), canonicalizes ids, is
// ignored when stale, and a wildcard expands only inside the granted
// scopes; the device learns the demand as it changes; a transcript
// (discrete) and audio (binary frames, forwarded byte for byte) reach the
// app; apps.hello returns the set; another app's or an unbound session id
// is refused; binary from an app and malformed or oversized frames from
// the device close with 1003 and 1009.
func TestAppStreamsSubscribeAndDeliver(t *testing.T) {
	e := streamSetup(t, nil, 0)
	if len(e.hello.Subscriptions) != 0 || e.hello.SubscriptionSeq != 0 {
		t.Fatalf("hello before any set: %+v", e.hello)
	}
	if !slices.Contains(e.app.Welcome(t).Features, apps.FeatureStreams) {
		t.Fatal("welcome does not announce the streams feature")
	}
	var d protocol.StreamDemand
	e.dev.result("streams.demand", struct{}{}, &d)
	if len(d.Streams) != 0 {
		t.Fatalf("demand before any subscription: %v", d.Streams)
	}

	res := e.set(t, 1, "Transcript?LANG=en-US", "audio", "battery", "no_such", "bad id", "audio?colour=red")
	if strings.Join(res.Granted, ",") != "audio,transcript?lang=en-us" || strings.Join(res.Streams, ",") != "audio,transcript?lang=en-us" ||
		res.Seq != 1 || res.Stale {
		t.Fatalf("set 1: %+v", res)
	}
	want := map[string]string{"battery": protocol.StreamRejectMissingScope, "no_such": protocol.StreamRejectUnknown,
		"bad id": protocol.StreamRejectInvalid, "audio?colour=red": protocol.StreamRejectInvalid}
	if len(res.Rejected) != len(want) {
		t.Fatalf("rejected %+v, want %v", res.Rejected, want)
	}
	for _, r := range res.Rejected {
		if want[r.Stream] != r.Reason || r.Message == "" || (r.Reason == protocol.StreamRejectMissingScope) != (r.Scope == "stream:battery") {
			t.Errorf("rejection %+v", r)
		}
	}
	if got := e.dev.demand(); strings.Join(got, ",") != "audio,transcript?lang=en-us" {
		t.Fatalf("demand %v", got)
	}

	// A stale seq changes nothing and says so.
	if stale := e.set(t, 1, "location"); !stale.Stale || stale.Seq != 1 || strings.Join(stale.Streams, ",") != "audio,transcript?lang=en-us" ||
		len(stale.Granted) != 0 {
		t.Fatalf("stale set: %+v", stale)
	}

	// Discrete: the device publishes, the app gets it in order.
	for i, text := range []string{"hello", "world"} {
		pub := e.publish(t, "transcript?lang=en-US", map[string]any{"text": text, "final": true})
		if pub.Stream != "transcript?lang=en-us" || pub.Seq != uint64(i+1) || pub.Delivered != 1 {
			t.Fatalf("published %+v", pub)
		}
	}
	for i, text := range []string{"hello", "world"} {
		ev := e.app.streamEvent()
		if ev.Stream != "transcript?lang=en-us" || ev.Seq != uint64(i+1) || ev.Snapshot || !strings.Contains(string(ev.Data), `"text":"`+text+`"`) || ev.TimeMs == 0 {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	// A stream nobody subscribes to is published (numbered) but delivered to none.
	if pub := e.publish(t, "transcript?lang=fr", "bonjour"); pub.Delivered != 0 || pub.Seq != 1 {
		t.Fatalf("unsubscribed publish %+v", pub)
	}
	if f := e.dev.callErr("streams.publish", protocol.StreamPublishParams{Stream: "audio", Data: json.RawMessage(`1`)}); f.Code != protocol.CodeBadRequest {
		t.Fatalf("audio over streams.publish: %+v", f)
	}

	// Media: binary frames forwarded byte for byte, in order.
	for seq := uint32(1); seq <= 3; seq++ {
		e.dev.sendBinary("audio", seq, []byte(fmt.Sprintf("pcm-%d", seq)))
	}
	for seq := uint32(1); seq <= 3; seq++ {
		m := e.app.streamMessage()
		fr, err := protocol.ParseStreamFrame(m.bin)
		if err != nil || fr.Stream != "audio" || fr.Seq != seq || string(fr.Payload) != fmt.Sprintf("pcm-%d", seq) {
			t.Fatalf("binary %d: %+v %v (message %+v)", seq, fr, err, m.f)
		}
	}
	// A valid frame of a discrete stream is answered with an error event.
	e.dev.sendBinary("transcript", 1, []byte("x"))
	var pe protocol.Error
	if err := json.Unmarshal(e.dev.event(protocol.EventError).Data, &pe); err != nil || pe.Code != protocol.CodeBadRequest || pe.Details["stream"] != "transcript" {
		t.Fatalf("binary of a discrete stream: %+v %v", pe, err)
	}

	// The wildcard expands within the granted scopes only (no battery).
	res = e.set(t, 2, "*")
	if strings.Join(res.Streams, ",") != "audio,location,transcript" || len(res.Rejected) != 0 {
		t.Fatalf("set *: %+v", res)
	}
	if got := e.dev.demand(); strings.Join(got, ",") != "audio,location,transcript" {
		t.Fatalf("demand after *: %v", got)
	}
	var hello protocol.AppHello
	e.app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &hello)
	if strings.Join(hello.Subscriptions, ",") != "audio,location,transcript" || hello.SubscriptionSeq != 2 {
		t.Fatalf("hello subscriptions %v seq %d", hello.Subscriptions, hello.SubscriptionSeq)
	}
	res = e.set(t, 3)
	if len(res.Streams) != 0 {
		t.Fatalf("empty set: %+v", res)
	}
	if got := e.dev.demand(); len(got) != 0 {
		t.Fatalf("demand after the empty set: %v", got)
	}

	// Foreign session ids: another app's session, a made-up one, and a
	// device calling streams.set.
	other := createApp(t, e.m, map[string]any{"id": "com.example.other", "name": "Other", "kind": "background", "internal": true,
		"scopes": []string{"read", "stream:audio"}, "webhookUrl": e.b.srv.URL + "/hooks"})
	e.b.setSecrets(e.secret, other.WebhookSecret.Secret)
	apiJSON(t, e.m, mintToken(t, e.m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/com.example.other/install", map[string]any{"scopes": []string{"read", "stream:audio"}}, 200, nil)
	var st protocol.AppSessionStarted
	e.dev.result("apps.startSession", protocol.AppSessionStartParams{AppID: "com.example.other"}, &st)
	hook := e.b.next("session.start")
	oapp := mustDialStream(t, e.m, http.Header{"Authorization": {"Bearer " + other.Key.Key}, apps.TicketHeader: {hook["ticket"].(string)}}, 0)
	for _, p := range []protocol.StreamSetParams{
		{AppID: streamApp, SessionID: e.session, Seq: 9, Streams: []string{"audio"}},           // the first app's session
		{AppID: "com.example.other", SessionID: e.session, Seq: 9, Streams: []string{"audio"}}, // under its own app id
		{AppID: "com.example.other", SessionID: "as0000", Seq: 9, Streams: []string{"audio"}},  // made up
	} {
		if f := oapp.callErr("streams.set", p); f.Code != protocol.CodeNotFound {
			t.Errorf("streams.set %+v by another app: %+v, want not_found", p, f)
		}
	}
	if f := e.dev.callErr("streams.set", protocol.StreamSetParams{AppID: streamApp, SessionID: e.session, Seq: 9, Streams: []string{}}); f.Code != protocol.CodeForbidden {
		t.Errorf("streams.set by the device: %+v", f)
	}
	if f := e.app.callErr("streams.set", protocol.StreamSetParams{AppID: streamApp, SessionID: e.session, Seq: 0, Streams: []string{}}); f.Code != protocol.CodeBadRequest {
		t.Errorf("seq 0: %+v", f)
	}
	if res := e.set(t, 4); res.Stale || res.Seq != 4 {
		t.Fatalf("the refused calls changed the set: %+v", res)
	}

	// Binary from an app: 1003. A malformed frame from the device: 1003.
	// An oversized one: 1009.
	if err := oapp.write(ws.OpBinary, protocol.AppendStreamFrame(nil, "audio", 1, nil)); err != nil {
		t.Fatal(err)
	}
	if code := oapp.closeCode(); code != protocol.CloseUnsupportedData {
		t.Fatalf("binary from an app: close %d, want 1003", code)
	}
	if err := e.dev.write(ws.OpBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if code := e.dev.closeCode(); code != protocol.CloseUnsupportedData {
		t.Fatalf("malformed binary: close %d, want 1003", code)
	}
	dev2 := mustDialStream(t, e.m, bearer(mintToken(t, e.m, "u1", "u1-glasses", "glasses")), 0)
	dev2.sendBinary("audio", 1, make([]byte, 32<<10)) // the header makes it over 32 KiB
	if code := dev2.closeCode(); code != protocol.CloseTooBig {
		t.Fatalf("oversized binary: close %d, want 1009", code)
	}
}

// Welcome returns the connection's welcome (its first message), once read.
func (c *streamConn) Welcome(t *testing.T) protocol.Welcome {
	t.Helper()
	w := c.welcome.Load()
	if w == nil {
		t.Fatal("no welcome read yet")
	}
	return *w
}

// TestAppStreamsRevocation: narrowing the installation mid-stream stops
// delivery at once: the app gets stream.revoked, the next event and media
// frame are not delivered, and the device's demand drops the stream.
func TestAppStreamsRevocation(t *testing.T) {
	e := streamSetup(t, nil, 0)
	e.set(t, 1, "transcript", "audio")
	e.dev.demand()
	e.publish(t, "transcript", "one")
	if ev := e.app.streamEvent(); string(ev.Data) != `"one"` {
		t.Fatalf("first event %+v", ev)
	}
	e.install(t, "read", "stream:audio") // transcript withdrawn
	f := e.app.event(protocol.EventStreamRevoked)
	var rv protocol.StreamRevoked
	if err := json.Unmarshal(f.Data, &rv); err != nil || rv.Stream != "transcript" || rv.Scope != "stream:transcript" {
		t.Fatalf("revoked %+v %v", rv, err)
	}
	if got := e.dev.demand(); strings.Join(got, ",") != "audio" {
		t.Fatalf("demand after the revocation %v", got)
	}
	if pub := e.publish(t, "transcript", "two"); pub.Delivered != 0 {
		t.Fatalf("published after the revocation: %+v", pub)
	}
	// Audio still flows; after it is withdrawn too, nothing does.
	e.dev.sendBinary("audio", 1, []byte("a"))
	if m := e.app.streamMessage(); m.bin == nil {
		t.Fatalf("got %+v, want the audio frame", m.f)
	}
	e.install(t, "read")
	e.app.event(protocol.EventStreamRevoked)
	e.dev.sendBinary("audio", 2, []byte("b"))
	e.publish(t, "transcript", "three")
	// A marker the app may still get proves nothing else came before it.
	var hello protocol.AppHello
	e.app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &hello)
	if len(hello.Subscriptions) != 0 {
		t.Fatalf("subscriptions after both revocations: %v", hello.Subscriptions)
	}
	for _, m := range e.app.held {
		if m.bin != nil || (m.f != nil && m.f.Event == protocol.EventStream) {
			t.Fatalf("delivered after the revocation: %+v %q", m.f, m.bin)
		}
	}
	// Re-granting does not resubscribe by itself; a new set (and a new
	// connection's scopes) would.
	if res := e.set(t, 2, "transcript"); len(res.Granted) != 0 || len(res.Rejected) != 1 || res.Rejected[0].Reason != protocol.StreamRejectMissingScope {
		t.Fatalf("set after the revocation: %+v", res)
	}
}

// TestAppStreamsResume: a stateful stream's retained value is sent on
// subscribe (snapshot); while the app's connection is down the set is
// kept, and the app that resumes gets the snapshot again and the discrete
// events it missed, with stream.gap for those older than the kept history.
func TestAppStreamsResume(t *testing.T) {
	e := streamSetup(t, func(c *Config) { c.Apps.StreamHistory = 3 }, 0)
	e.publish(t, "location", map[string]any{"lat": 1})
	e.publish(t, "location", map[string]any{"lat": 2})
	res := e.set(t, 1, "location", "transcript")
	if strings.Join(res.Streams, ",") != "location,transcript" {
		t.Fatalf("set %+v", res)
	}
	ev := e.app.streamEvent()
	if ev.Stream != "location" || !ev.Snapshot || ev.Seq != 2 || string(ev.Data) != `{"lat":2}` {
		t.Fatalf("snapshot on subscribe %+v", ev)
	}
	e.publish(t, "transcript", "t1")
	if ev := e.app.streamEvent(); ev.Seq != 1 || ev.Snapshot {
		t.Fatalf("live event %+v", ev)
	}
	var hello protocol.AppHello
	e.app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &hello)

	// The connection drops: transport_down, the set is kept (demand too).
	_ = e.app.nc.Close()
	for {
		s := e.dev.event(protocol.EventAppSession)
		var as protocol.AppSession
		_ = json.Unmarshal(s.Data, &as)
		if as.State == protocol.AppStateTransportDown {
			break
		}
	}
	var d protocol.StreamDemand
	e.dev.result("streams.demand", struct{}{}, &d)
	if strings.Join(d.Streams, ",") != "location,transcript" {
		t.Fatalf("demand while the app is down: %v", d.Streams)
	}
	for i := 2; i <= 6; i++ {
		if pub := e.publish(t, "transcript", fmt.Sprintf("t%d", i)); pub.Delivered != 0 {
			t.Fatalf("delivered while down: %+v", pub)
		}
	}
	e.publish(t, "location", map[string]any{"lat": 3})

	// Resume with the token of the last hello.
	app := mustDialStream(t, e.m, http.Header{"Authorization": {"Bearer " + e.key}, apps.ResumeHeader: {hello.ResumeToken}}, 0)
	var got []string
	for len(got) < 5 {
		m := app.streamMessage()
		if m.f.Event == protocol.EventStreamGap {
			var g protocol.StreamGap
			_ = json.Unmarshal(m.f.Data, &g)
			got = append(got, fmt.Sprintf("gap %s %d %s", g.Stream, g.Count, g.Reason))
			continue
		}
		var ev protocol.StreamEvent
		_ = json.Unmarshal(m.f.Data, &ev)
		got = append(got, fmt.Sprintf("%s %d %s %v", ev.Stream, ev.Seq, ev.Data, ev.Snapshot))
	}
	// Streams are replayed in id order: location's snapshot, then the
	// transcript events 2..6 of which the last 3 are kept.
	want := []string{`location 3 {"lat":3} true`, "gap transcript 2 history", `transcript 4 "t4" false`, `transcript 5 "t5" false`, `transcript 6 "t6" false`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("after the resume:\n got %q\nwant %q", got, want)
	}
	var again protocol.AppHello
	app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &again)
	if strings.Join(again.Subscriptions, ",") != "location,transcript" || again.SubscriptionSeq != 1 {
		t.Fatalf("hello after the resume: %v seq %d", again.Subscriptions, again.SubscriptionSeq)
	}
	e.publish(t, "transcript", "t7")
	if ev := app.streamEvent(); ev.Seq != 7 {
		t.Fatalf("live after the resume %+v", ev)
	}

	// Stopped: the set is dropped, the device's demand empties.
	e.dev.result("apps.stopSession", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, nil)
	for {
		if got := e.dev.demand(); len(got) == 0 {
			break
		}
	}
}

// TestAppStreamsSlowConsumer: an app that does not read fills its socket;
// media frames then wait in the subscription's bounded queue and the
// oldest are dropped; when the app reads again it gets the frames in
// order, the drop announced by stream.gap with the exact count before the
// first frame after it.
func TestAppStreamsSlowConsumer(t *testing.T) {
	e := streamSetup(t, func(c *Config) {
		c.Apps.StreamQueueFrames = 8
		c.Apps.StreamInflightFrames = 4
	}, 64<<10)
	e.set(t, 1, "audio")
	e.dev.demand()
	e.app.pause()
	dropped := func() float64 {
		mfs, err := e.m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "junction_app_stream_dropped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no junction_app_stream_dropped_total")
		return 0
	}
	payload := make([]byte, 16<<10)
	seq := uint32(0)
	for dropped() < 20 {
		if seq > 20000 {
			t.Fatalf("no drops after %d frames of %d bytes", seq, len(payload))
		}
		for range 50 {
			seq++
			e.dev.sendBinary("audio", seq, payload)
		}
		// The device's frames are handled in order: an answer means all
		// of them were.
		e.dev.result("streams.demand", struct{}{}, nil)
	}
	t.Logf("%d frames sent before %v were dropped", seq, dropped())
	e.app.unpause()
	// Every frame sent is either received or counted in a gap, in order.
	next, gaps := uint32(1), uint64(0)
	for next <= seq {
		m := e.app.streamMessage()
		if m.f != nil {
			var g protocol.StreamGap
			if err := json.Unmarshal(m.f.Data, &g); err != nil || g.Stream != "audio" || g.Reason != protocol.GapQueue || g.Count == 0 {
				t.Fatalf("gap %s: %v", m.f.Data, err)
			}
			next += uint32(g.Count)
			gaps += g.Count
			continue
		}
		fr, err := protocol.ParseStreamFrame(m.bin)
		if err != nil || fr.Seq != next {
			t.Fatalf("frame seq %d (%v), want %d (after %d dropped)", fr.Seq, err, next, gaps)
		}
		next++
	}
	if float64(gaps) != dropped() || gaps < 20 {
		t.Fatalf("gaps announced %d, dropped %v", gaps, dropped())
	}
}

// TestAppStreamsRevokedWhileDown: a scope withdrawn while the app's
// connection is down (no connection to recheck) is found when the session
// resumes: the subscription is revoked before anything of it is delivered.
func TestAppStreamsRevokedWhileDown(t *testing.T) {
	e := streamSetup(t, nil, 0)
	e.set(t, 1, "transcript", "location")
	e.publish(t, "location", map[string]any{"lat": 1})
	if ev := e.app.streamEvent(); ev.Snapshot || ev.Stream != "location" || ev.Seq != 1 {
		t.Fatalf("event %+v", ev)
	}
	var hello protocol.AppHello
	e.app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &hello)
	_ = e.app.nc.Close()
	for {
		var as protocol.AppSession
		_ = json.Unmarshal(e.dev.event(protocol.EventAppSession).Data, &as)
		if as.State == protocol.AppStateTransportDown {
			break
		}
	}
	e.install(t, "read", "stream:transcript") // location withdrawn
	e.publish(t, "location", map[string]any{"lat": 2})
	e.publish(t, "transcript", "while down")

	app := mustDialStream(t, e.m, http.Header{"Authorization": {"Bearer " + e.key}, apps.ResumeHeader: {hello.ResumeToken}}, 0)
	// In order: location revoked (nothing of it delivered), then the
	// transcript event missed.
	revoked := false
	for done := false; !done; {
		m := app.next()
		switch {
		case m.close != 0:
			t.Fatalf("closed %d", m.close)
		case m.f == nil || m.f.Type != protocol.TypeEvent:
		case m.f.Event == protocol.EventStreamRevoked:
			var rv protocol.StreamRevoked
			if err := json.Unmarshal(m.f.Data, &rv); err != nil || rv.Stream != "location" || rv.Scope != "stream:location" {
				t.Fatalf("revoked %+v %v", rv, err)
			}
			revoked = true
		case m.f.Event == protocol.EventStream:
			var ev protocol.StreamEvent
			_ = json.Unmarshal(m.f.Data, &ev)
			if !revoked || ev.Stream != "transcript" || string(ev.Data) != `"while down"` {
				t.Fatalf("after the resume: %+v (revoked before: %v)", ev, revoked)
			}
			done = true
		}
	}
	var again protocol.AppHello
	app.result("apps.hello", protocol.AppSessionRef{AppID: streamApp, SessionID: e.session}, &again)
	if strings.Join(again.Subscriptions, ",") != "transcript" {
		t.Fatalf("subscriptions after the resume %v", again.Subscriptions)
	}
	for {
		if got := e.dev.demand(); strings.Join(got, ",") == "transcript" {
			break
		}
	}
}
