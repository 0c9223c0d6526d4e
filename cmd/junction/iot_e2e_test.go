package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// compactClient is a minimal client of the compact protocol: it speaks only
// [topic, event, payload] arrays, one per WebSocket message, as a device does.
type compactClient struct {
	t       *testing.T
	conn    net.Conn
	sub     string                         // the subprotocol the server chose
	welcome protocol.CompactWelcomePayload // the first message's payload
}

// compactMsg is one received array.
type compactMsg struct {
	Topic, Event string
	Payload      json.RawMessage
}

func (m compactMsg) String() string { return fmt.Sprintf("[%q %q %s]", m.Topic, m.Event, m.Payload) }

// dialCompact opens path (/ws/iot or /ws) with the token in the header or
// the query, offering subprotocols, and reads the welcome.
func dialCompact(t *testing.T, m *Main, path, token string, query bool, subprotocols ...string) *compactClient {
	t.Helper()
	c, err := tryDialCompact(m, path, token, query, subprotocols...)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c.t = t
	t.Cleanup(func() { _ = c.conn.Close() })
	w := c.read()
	if w.Topic != protocol.CompactSysTopic || w.Event != protocol.CompactWelcome {
		t.Fatalf("got first message %s, want the welcome", w)
	}
	if err := json.Unmarshal(w.Payload, &c.welcome); err != nil || c.welcome.ConnID == "" || c.welcome.Protocol != protocol.CompactSubprotocol {
		t.Fatalf("got welcome %s", w.Payload)
	}
	return c
}

func tryDialCompact(m *Main, path, token string, query bool, subprotocols ...string) (*compactClient, error) {
	url := m.WSURL() + path
	d := gws.Dialer{Timeout: 5 * time.Second, Protocols: subprotocols}
	if query {
		url += "?token=" + token
	} else {
		d.Header = gws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})
	}
	conn, br, hs, err := d.Dial(context.Background(), url)
	if err != nil {
		return nil, err
	}
	if br != nil {
		// The server's first frames may have come with the handshake.
		conn = &bufConn{Conn: conn, r: br}
	}
	return &compactClient{conn: conn, sub: hs.Protocol}, nil
}

// bufConn reads what the handshake's reader buffered first.
type bufConn struct {
	net.Conn
	r interface{ Read([]byte) (int, error) }
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// sendRaw sends one text message as it is.
func (c *compactClient) sendRaw(s string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(s)); err != nil {
		c.t.Fatalf("send %s: %v", s, err)
	}
}

// send sends [topic, event, payload].
func (c *compactClient) send(topic, event string, payload any) {
	c.t.Helper()
	b, err := json.Marshal([]any{topic, event, payload})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

// read returns the next array; each WebSocket message must hold exactly one.
func (c *compactClient) read() compactMsg {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := wsutil.ReadServerText(c.conn)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != 3 {
		c.t.Fatalf("got message %q, want one array [topic, event, payload]", b)
	}
	var m compactMsg
	if json.Unmarshal(parts[0], &m.Topic) != nil || json.Unmarshal(parts[1], &m.Event) != nil {
		c.t.Fatalf("got message %q, want string topic and event", b)
	}
	m.Payload = parts[2]
	return m
}

// expect reads the next array and checks its topic and event.
func (c *compactClient) expect(topic, event string) compactMsg {
	c.t.Helper()
	m := c.read()
	if m.Topic != topic || m.Event != event {
		c.t.Fatalf("got %s, want [%q %q ...]", m, topic, event)
	}
	return m
}

// expectError reads [topic, "error", {code}] and checks the code.
func (c *compactClient) expectError(topic string, code protocol.Code) protocol.CompactErrorPayload {
	c.t.Helper()
	m := c.expect(topic, protocol.CompactError)
	var e protocol.CompactErrorPayload
	if err := json.Unmarshal(m.Payload, &e); err != nil || e.Code != code || e.Message == "" {
		c.t.Fatalf("got error %s, want code %s with a message", m.Payload, code)
	}
	return e
}

func jsonEq(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %s: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("%s: got %s, want %s", what, gb, wb)
	}
}

func iotServer(t *testing.T) *Main {
	return startServer(t, withNamespaces(
		hub.NamespaceConfig{Pattern: "sensor:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"},
			HistorySize: 20, Snapshot: hub.SnapshotRetained},
		hub.NamespaceConfig{Pattern: "ro:{id}", Subscribe: []string{"any"}, Publish: []string{"none"}},
	))
}

// TestIoTCompactChannels: a device on /ws/iot subscribes (subscribed, then
// the snapshot), publishes with event names that a protocol v1 subscriber
// sees, receives what v1 clients and REST publish with their event names,
// unsubscribes, and resumes with since.
func TestIoTCompactChannels(t *testing.T) {
	m := iotServer(t)
	ctx := context.Background()
	app := dialClient(t, m, "alice", "phone1", "phone")
	if _, _, err := app.PublishEvent(ctx, "sensor:1", "temp", map[string]int{"c": 20}); err != nil {
		t.Fatal(err)
	}

	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp1", "iot"), true)
	dev.send("sensor:1", "subscribe", map[string]string{"id": "s1"})
	sub := dev.expect("sensor:1", "subscribed")
	var pos protocol.CompactSubscribedPayload
	if err := json.Unmarshal(sub.Payload, &pos); err != nil || pos.ID != "s1" || pos.Offset != 1 || pos.Epoch == "" || pos.Recovered {
		t.Fatalf("got subscribed %s, want id s1 at offset 1, not recovered", sub.Payload)
	}
	snap := dev.expect("sensor:1", "snapshot")
	var retained protocol.Publication
	if err := json.Unmarshal(snap.Payload, &retained); err != nil || retained.Offset != 1 || retained.Event != "temp" {
		t.Fatalf("got snapshot %s, want the retained publication 1 named temp", snap.Payload)
	}
	jsonEq(t, "snapshot data", retained.Data, `{"c":20}`)

	var mu sync.Mutex
	var seen []client.Publication
	if _, err := app.Subscribe(ctx, "sensor:1", func(p client.Publication) {
		mu.Lock()
		seen = append(seen, p)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	// The device publishes; it is subscribed, so it gets its own back.
	dev.send("sensor:1", "humidity", map[string]int{"h": 40})
	got := dev.expect("sensor:1", "humidity")
	jsonEq(t, "own publication", got.Payload, `{"h":40}`)
	// A v1 client publishes with and without a name; REST with one.
	if _, _, err := app.PublishEvent(ctx, "sensor:1", "temp", map[string]int{"c": 21}); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "temp", dev.expect("sensor:1", "temp").Payload, `{"c":21}`)
	if _, _, err := app.Publish(ctx, "sensor:1", "plain"); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "message", dev.expect("sensor:1", "message").Payload, `"plain"`)
	status, body := restPublish(t, m, mintToken(t, m, "alice", "backend", "machine"), "sensor:1", `{"event":"alarm","data":{"level":3}}`)
	if status != http.StatusOK {
		t.Fatalf("REST publish: got %d %s", status, body)
	}
	jsonEq(t, "alarm", dev.expect("sensor:1", "alarm").Payload, `{"level":3}`)

	eventually(t, "the v1 subscriber's 4 publications", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 4 })
	mu.Lock()
	for i, want := range []string{"humidity", "temp", "message", "alarm"} {
		if seen[i].Event != want {
			t.Errorf("v1 subscriber, publication %d: got event %q, want %q", i, seen[i].Event, want)
		}
	}
	last := seen[3]
	mu.Unlock()

	dev.send("sensor:1", "unsubscribe", map[string]any{})
	jsonEq(t, "unsubscribed", dev.expect("sensor:1", "unsubscribed").Payload, `{}`)
	if _, _, err := app.PublishEvent(ctx, "sensor:1", "temp", 22); err != nil {
		t.Fatal(err)
	}
	if _, _, err := app.Publish(ctx, "sensor:1", 23); err != nil {
		t.Fatal(err)
	}
	// Resume after offset 3: publications 4..7, in order, with their names.
	dev.send("sensor:1", "subscribe", map[string]any{"since": map[string]any{"epoch": last.Epoch, "offset": 3}})
	res := dev.expect("sensor:1", "subscribed")
	if err := json.Unmarshal(res.Payload, &pos); err != nil || !pos.Recovered || pos.Offset != 7 {
		t.Fatalf("got subscribed %s, want recovered at offset 7", res.Payload)
	}
	for _, want := range []struct{ event, data string }{{"message", `"plain"`}, {"alarm", `{"level":3}`}, {"temp", `22`}, {"message", `23`}} {
		jsonEq(t, want.event, dev.expect("sensor:1", want.event).Payload, want.data)
	}
	// A gap outside history: not recovered, a fresh snapshot.
	dev.send("sensor:1", "unsubscribe", nil)
	dev.expect("sensor:1", "unsubscribed")
	dev.send("sensor:1", "subscribe", map[string]any{"id": "s2", "since": map[string]any{"epoch": "gone", "offset": 3}})
	res = dev.expect("sensor:1", "subscribed")
	if err := json.Unmarshal(res.Payload, &pos); err != nil || pos.Recovered || pos.ID != "s2" {
		t.Fatalf("got subscribed %s, want not recovered, id s2", res.Payload)
	}
	dev.expect("sensor:1", "snapshot")

	// A v1 subscriber sees the device in presence-free namespaces only as
	// a publisher; the device's publish rule is checked like anyone's.
	dev.send("ro:1", "subscribe", nil)
	dev.expect("ro:1", "subscribed")
	dev.send("ro:1", "reading", 1)
	dev.expectError("ro:1", protocol.CodeForbidden)
}

// restPublish posts a REST publish with a bearer token.
func restPublish(t *testing.T, m *Main, token, topic, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+m.Addr().String()+"/api/v1/channels/"+topic+"/publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

// TestIoTMalformedMessages: what is not a usable array is answered with
// [topic, "error", {code, message}] and the connection stays open.
func TestIoTMalformedMessages(t *testing.T) {
	m := iotServer(t)
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp1", "iot"), false)
	tests := []struct {
		name, msg, topic string
		code             protocol.Code
	}{
		{"not JSON", `hello`, "", protocol.CodeInvalidFrame},
		{"truncated", `["sensor:1","subscribe",{`, "", protocol.CodeInvalidFrame},
		{"an object", `{"type":"req","id":"1","method":"sys.ping"}`, "", protocol.CodeInvalidFrame},
		{"numbers", `[1,2,3]`, "", protocol.CodeInvalidFrame},
		{"topic only", `["sensor:1"]`, "sensor:1", protocol.CodeInvalidFrame},
		{"four elements", `["sensor:1","x",{},1]`, "sensor:1", protocol.CodeInvalidFrame},
		{"empty event", `["sensor:1","",{}]`, "sensor:1", protocol.CodeInvalidFrame},
		{"two arrays in one message", `["sensor:1","x",1]` + "\n" + `["sensor:1","y",2]`, "", protocol.CodeInvalidFrame},
		{"bad topic", `["bad topic","subscribe",{}]`, "bad topic", protocol.CodeBadRequest},
		{"unknown namespace", `["nope:1","subscribe",{}]`, "nope:1", protocol.CodeNotFound},
		{"unknown subscribe member", `["sensor:1","subscribe",{"bogus":1}]`, "sensor:1", protocol.CodeBadRequest},
		{"server event", `["sensor:1","subscribed",{}]`, "sensor:1", protocol.CodeBadRequest},
		{"reserved publication name", `["sensor:1","snapshot",{}]`, "sensor:1", protocol.CodeBadRequest},
		{"null publication", `["sensor:1","temp",null]`, "sensor:1", protocol.CodeBadRequest},
		{"bad event name", `["sensor:1","te mp",1]`, "sensor:1", protocol.CodeBadRequest},
		{"sys topic", `["$sys","ping",{}]`, "$sys", protocol.CodeBadRequest},
		{"unknown rpc event", `["$rpc","dance",{}]`, "$rpc", protocol.CodeBadRequest},
		{"rpc result without id", `["$rpc","result",{"result":1}]`, "$rpc", protocol.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev.t = t
			dev.sendRaw(tt.msg)
			dev.expectError(tt.topic, tt.code)
		})
	}
	dev.t = t
	// Still open and working.
	dev.send("sensor:1", "subscribe", map[string]string{"id": "after"})
	dev.expect("sensor:1", "subscribed")
}

// TestIoTSkippedPublication: a publication over the device's frame limit
// arrives as [topic, "skipped", {offset, reason}]; the next one normally.
// A v1 subscriber gets both.
func TestIoTSkippedPublication(t *testing.T) {
	m := startServer(t, func(c *Config) {
		withNamespaces(hub.NamespaceConfig{Pattern: "sensor:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: 10})(c)
		c.IoT.MaxFrameBytes = 1024
	})
	ctx := context.Background()
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp1", "iot"), true)
	if w := dev.welcome; w.MaxFrameBytes != 1024 || w.HeartbeatMs != 20000 || w.HeartbeatTimeoutMs != 10000 || w.Principal.Kind != "iot" {
		t.Fatalf("got welcome %+v, want the iot limits (1024 bytes, 20 s, 10 s)", w)
	}
	dev.send("sensor:9", "subscribe", nil)
	dev.expect("sensor:9", "subscribed")
	app := dialClient(t, m, "alice", "phone1", "phone")
	big := strings.Repeat("x", 2000)
	_, off, err := app.PublishEvent(ctx, "sensor:9", "firmware", big)
	if err != nil {
		t.Fatal(err)
	}
	sk := dev.expect("sensor:9", "skipped")
	var p protocol.CompactSkippedPayload
	if err := json.Unmarshal(sk.Payload, &p); err != nil || p.Offset != off || p.Reason != "too_large" || p.Event != "firmware" || p.Limit != 1024 || p.Bytes <= 1024 {
		t.Fatalf("got skipped %s, want offset %d, too_large, firmware, limit 1024", sk.Payload, off)
	}
	if _, _, err := app.Publish(ctx, "sensor:9", "small"); err != nil {
		t.Fatal(err)
	}
	jsonEq(t, "next publication", dev.expect("sensor:9", "message").Payload, `"small"`)

	// Resume over the big one: skipped again, in its place.
	dev.send("sensor:9", "unsubscribe", nil)
	dev.expect("sensor:9", "unsubscribed")
	dev.send("sensor:9", "subscribe", map[string]any{"since": map[string]any{"epoch": p.Epoch, "offset": 0}})
	dev.expect("sensor:9", "subscribed")
	dev.expect("sensor:9", "skipped")
	dev.expect("sensor:9", "message")

	// Inbound, the limit closes the connection with 1009 (message too big).
	// The close frame is read frame by frame: wsutil's reader answers a
	// close with one of its own, and that write fails with EPIPE when the
	// server has already closed the socket (it may, after sending 1009),
	// hiding the code it sent.
	dev.sendRaw(`["sensor:9","x","` + big + `"]`)
	_ = dev.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := gws.ReadFrame(dev.conn)
		if err != nil {
			t.Fatalf("got %v after an oversized message, want close 1009", err)
		}
		if f.Header.OpCode != gws.OpClose {
			continue
		}
		if code, _ := gws.ParseCloseFrameData(f.Payload); code != gws.StatusMessageTooBig {
			t.Fatalf("got close %d after an oversized message, want 1009", code)
		}
		break
	}
}

// TestIoTServesRPC: a device registers a method on $rpc and answers the
// calls a v1 client makes to it, with a result and with an error.
func TestIoTServesRPC(t *testing.T) {
	m := iotServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "relay1", "iot"), true)
	dev.send("$rpc", "register", map[string]any{"methods": []string{"relay.set"}})
	jsonEq(t, "registered", dev.expect("$rpc", "registered").Payload, `{"methods":["relay.set"]}`)

	app := dialClient(t, m, "alice", "phone1", "phone")
	type outcome struct {
		res map[string]any
		err error
	}
	call := func(on bool) chan outcome {
		ch := make(chan outcome, 1)
		go func() {
			var o outcome
			o.err = app.CallDevice(ctx, "relay1", "relay.set", map[string]bool{"on": on}, &o.res)
			ch <- o
		}()
		return ch
	}
	done := call(true)
	c := dev.expect("$rpc", "call")
	var cp protocol.CompactCallPayload
	if err := json.Unmarshal(c.Payload, &cp); err != nil || cp.ID == "" || cp.Method != "relay.set" || cp.Caller == nil || cp.Caller.DeviceID != "phone1" {
		t.Fatalf("got call %s, want relay.set from phone1 with an id", c.Payload)
	}
	jsonEq(t, "params", cp.Params, `{"on":true}`)
	dev.send("$rpc", "result", map[string]any{"id": cp.ID, "result": map[string]bool{"on": true}})
	if o := <-done; o.err != nil || o.res["on"] != true {
		t.Fatalf("got %v, %v, want {on: true}", o.res, o.err)
	}

	done = call(false)
	c = dev.expect("$rpc", "call")
	_ = json.Unmarshal(c.Payload, &cp)
	dev.send("$rpc", "error", map[string]any{"id": cp.ID, "code": "conflict", "message": "relay is locked"})
	o := <-done
	var pe *protocol.Error
	if !errors.As(o.err, &pe) || pe.Code != protocol.CodeConflict || pe.Message != "relay is locked" {
		t.Fatalf("got %v, want conflict relay is locked", o.err)
	}

	// A call over the device's frame limit is answered too_large.
	big := strings.Repeat("x", 5000)
	var res any
	err := app.CallDevice(ctx, "relay1", "relay.set", map[string]string{"blob": big}, &res)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeTooLarge {
		t.Fatalf("got %v for an oversized call, want too_large", err)
	}
}

// TestIoTAuthAndCompactSubprotocol: /ws/iot takes only tokens of kind iot
// (header or query); /ws speaks the compact protocol to a client offering
// junction.compact.v1, and both codecs share channels.
func TestIoTAuthAndCompactSubprotocol(t *testing.T) {
	m := iotServer(t)
	for _, query := range []bool{false, true} {
		_, err := tryDialCompact(m, "/ws/iot", mintToken(t, m, "alice", "phone1", "phone"), query)
		var se gws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusForbidden {
			t.Fatalf("query %v: got %v for a phone token on /ws/iot, want 403", query, err)
		}
	}
	if _, err := tryDialCompact(m, "/ws/iot", "garbage", true); err == nil {
		t.Fatal("got an upgrade with a bad token")
	}
	_ = dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp1", "iot"), false) // header
	if offered := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp3", "iot"), true, protocol.CompactSubprotocol); offered.sub != protocol.CompactSubprotocol {
		t.Fatalf("got subprotocol %q on /ws/iot, want the one offered", offered.sub)
	}

	br := dialCompact(t, m, "/ws", mintToken(t, m, "bob", "browser1", "browser"), false, protocol.CompactSubprotocol)
	if br.sub != protocol.CompactSubprotocol {
		t.Fatalf("got subprotocol %q, want %s", br.sub, protocol.CompactSubprotocol)
	}
	if w := br.welcome; w.MaxFrameBytes != protocol.DefaultMaxFrameBytes || w.HeartbeatMs != 30000 {
		t.Fatalf("got welcome %+v on /ws, want the hub's limits", w)
	}
	br.send("sensor:5", "subscribe", map[string]string{"id": "1"})
	br.expect("sensor:5", "subscribed")
	jsonEq(t, "no retained publication yet", br.expect("sensor:5", "snapshot").Payload, `null`)
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp2", "iot"), true)
	dev.send("sensor:5", "temp", 19)
	jsonEq(t, "from the device", br.expect("sensor:5", "temp").Payload, `19`)
}

// TestIoTPresenceAndCancel: a device on a presence namespace sees v1
// clients join and leave; a call its caller gives up on reaches it as
// ["$rpc", "cancel", {id}].
func TestIoTPresenceAndCancel(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"any"}, Presence: true}))
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp1", "iot"), true)
	dev.send("room:1", "subscribe", nil)
	dev.expect("room:1", "subscribed")
	app := dialClient(t, m, "alice", "phone1", "phone")
	ctx := context.Background()
	s, err := app.Subscribe(ctx, "room:1", func(client.Publication) {})
	if err != nil {
		t.Fatal(err)
	}
	var info protocol.ClientInfo
	if j := dev.expect("room:1", "join"); json.Unmarshal(j.Payload, &info) != nil || info.DeviceID != "phone1" {
		t.Fatalf("got join %s, want phone1", j.Payload)
	}
	if err := s.Unsubscribe(ctx); err != nil {
		t.Fatal(err)
	}
	if l := dev.expect("room:1", "leave"); json.Unmarshal(l.Payload, &info) != nil || info.DeviceID != "phone1" {
		t.Fatalf("got leave %s, want phone1", l.Payload)
	}

	dev.send("$rpc", "register", map[string]any{"methods": []string{"relay.set"}})
	dev.expect("$rpc", "registered")
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- app.CallDevice(cctx, "esp1", "relay.set", map[string]bool{"on": true}, nil) }()
	var cp protocol.CompactCallPayload
	if err := json.Unmarshal(dev.expect("$rpc", "call").Payload, &cp); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	var rc protocol.RPCCancel
	if c := dev.expect("$rpc", "cancel"); json.Unmarshal(c.Payload, &rc) != nil || rc.ID != cp.ID {
		t.Fatalf("got cancel %s, want id %s", c.Payload, cp.ID)
	}
}

// TestIoTHeartbeat: /ws/iot has its own heartbeat: a device that answers
// no ping is closed with 4102 after iot.heartbeat_timeout, while a /ws
// client under the hub's longer heartbeat stays.
func TestIoTHeartbeat(t *testing.T) {
	m := startServer(t, func(c *Config) {
		c.IoT.HeartbeatInterval = 100 * time.Millisecond
		c.IoT.HeartbeatTimeout = 100 * time.Millisecond
	})
	_ = dialClient(t, m, "alice", "phone1", "phone")
	dev := dialCompact(t, m, "/ws/iot", mintToken(t, m, "alice", "esp-hb", "iot"), true) // then reads nothing
	if dev.welcome.HeartbeatMs != 100 {
		t.Fatalf("got heartbeat %d ms, want 100", dev.welcome.HeartbeatMs)
	}
	eventually(t, "the silent device to be closed", func() bool { return m.Hub.ConnOfDevice("esp-hb") == nil })
	_ = dev.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for { // the unanswered pings, then the close
		f, err := gws.ReadFrame(dev.conn)
		if err != nil {
			t.Fatalf("read: %v, want a close frame", err)
		}
		if f.Header.OpCode == gws.OpPing {
			continue
		}
		code, _ := gws.ParseCloseFrameData(f.Payload)
		if f.Header.OpCode != gws.OpClose || int(code) != protocol.CloseHeartbeatTimeout {
			t.Fatalf("got frame %v %q, want close %d", f.Header.OpCode, f.Payload, protocol.CloseHeartbeatTimeout)
		}
		break
	}
	if m.Hub.ConnOfDevice("phone1") == nil {
		t.Fatal("the /ws client was closed too")
	}
}
