package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// rpcServer starts the server with short RPC settings for tests.
func rpcServer(t *testing.T, configure func(*hub.RPCConfig)) *Main {
	t.Helper()
	return startServer(t, func(cfg *Config) {
		cfg.Hub.RPC.OfflineGrace = 300 * time.Millisecond
		if configure != nil {
			configure(&cfg.Hub.RPC)
		}
	})
}

// machine connects a machine of user serving the handlers, reconnecting
// when asked.
func machine(t *testing.T, m *Main, user, device string, reconnect bool, handlers map[string]client.RPCHandler, scopes ...string) *client.Client {
	t.Helper()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeRead, auth.ScopeWrite}
	}
	tok := mintToken(t, m, user, device, "machine", scopes...)
	c := client.New(checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", Token: tok, Reconnect: reconnect,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}))
	for name, fn := range handlers {
		if err := c.Serve(name, fn); err != nil {
			t.Fatalf("Serve before connect: got %v, want nil", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect machine %s: %v", device, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Connect returns after the OnConnect hooks, so the methods are callable.
	return c
}

type echoResult struct {
	Params json.RawMessage `json:"params"`
	Caller protocol.Caller `json:"caller"`
	Method string          `json:"method"`
	Extra  map[string]any  `json:"extra,omitempty"`
	_      struct{}        `json:"-"`
}

func echo(_ context.Context, req *client.RPCRequest) (any, error) {
	return echoResult{Params: req.Params, Caller: req.Caller, Method: req.Method}, nil
}

func codeOf(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestRPCCallRelaysWithCallerMeta(t *testing.T) {
	m := rpcServer(t, nil)
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"sys.echo": echo})
	phone := dialClient(t, m, "u1", "phone1", "phone")

	var got echoResult
	err := phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"n": 7}, &got)
	if err != nil {
		t.Fatalf("CallDevice: got %v, want nil", err)
	}
	if string(got.Params) != `{"n":7}` {
		t.Errorf("params at the target: got %s, want {\"n\":7}", got.Params)
	}
	if got.Caller.UserID != "u1" || got.Caller.DeviceID != "phone1" {
		t.Errorf("meta.caller: got %+v, want user u1 device phone1", got.Caller)
	}
	if got.Method != "sys.echo" {
		t.Errorf("method at the target: got %q, want sys.echo", got.Method)
	}
}

func TestRPCErrors(t *testing.T) {
	m := rpcServer(t, func(c *hub.RPCConfig) {
		c.Grants = []hub.RPCGrant{{FromUser: "friend", ToUser: "u1", Methods: []string{"pub.*"}}}
	})
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{
		"sys.echo": echo,
		"pub.echo": echo,
		"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
		"sys.fail": func(context.Context, *client.RPCRequest) (any, error) {
			return nil, &protocol.Error{Code: protocol.CodeConflict, Message: "version 3", Details: map[string]any{"version": 3.0}}
		},
	})
	owner := dialClient(t, m, "u1", "phone1", "phone")
	stranger := dialClient(t, m, "u2", "phone2", "phone")
	friend := dialClient(t, m, "friend", "phone3", "phone")

	tests := []struct {
		name      string
		caller    *client.Client
		device    string
		method    string
		params    any
		timeout   time.Duration
		wantCode  protocol.Code
		wantField string
	}{
		{name: "same user ok", caller: owner, device: "mac1", method: "sys.echo"},
		{name: "cross user forbidden", caller: stranger, device: "mac1", method: "sys.echo", wantCode: protocol.CodeForbidden},
		{name: "granted cross user ok", caller: friend, device: "mac1", method: "pub.echo"},
		{name: "grant does not cover method", caller: friend, device: "mac1", method: "sys.echo", wantCode: protocol.CodeForbidden},
		{name: "unregistered method", caller: owner, device: "mac1", method: "sys.nope", wantCode: protocol.CodeUnknownMethod},
		{name: "target error passes through", caller: owner, device: "mac1", method: "sys.fail", wantCode: protocol.CodeConflict},
		{name: "timeout", caller: owner, device: "mac1", method: "sys.block", timeout: 200 * time.Millisecond, wantCode: protocol.CodeTimeout},
		{name: "offline after grace", caller: owner, device: "nobody", method: "sys.echo", wantCode: protocol.CodeUnavailable},
		{name: "bad method name", caller: owner, device: "mac1", method: "nodot", wantCode: protocol.CodeBadRequest, wantField: "method"},
		{name: "missing device", caller: owner, device: "", method: "sys.echo", wantCode: protocol.CodeBadRequest, wantField: "target.deviceId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []client.CallOption
			if tt.timeout > 0 {
				opts = append(opts, client.WithCallTimeout(tt.timeout))
			}
			err := tt.caller.CallDevice(t.Context(), tt.device, tt.method, tt.params, nil, opts...)
			if got := codeOf(err); got != tt.wantCode {
				t.Fatalf("error code: got %q (%v), want %q", got, err, tt.wantCode)
			}
			if tt.wantField != "" {
				var pe *protocol.Error
				errors.As(err, &pe)
				if pe.Details["field"] != tt.wantField {
					t.Errorf("details.field: got %v, want %q", pe.Details["field"], tt.wantField)
				}
			}
			if tt.name == "target error passes through" {
				var pe *protocol.Error
				errors.As(err, &pe)
				if pe.Message != "version 3" || pe.Details["version"] != 3.0 {
					t.Errorf("relayed error: got %+v, want message and details kept", pe)
				}
			}
		})
	}
}

func TestRPCRegisterNeedsScope(t *testing.T) {
	m := rpcServer(t, nil)
	tests := []struct {
		name   string
		kind   string
		scopes []string
		want   protocol.Code
	}{
		{name: "phone without rpc.serve", kind: "phone", scopes: []string{auth.ScopeRead, auth.ScopeWrite}, want: protocol.CodeForbidden},
		{name: "phone with rpc.serve", kind: "phone", scopes: []string{auth.ScopeRead, auth.ScopeRPCServe}},
		{name: "machine", kind: "machine", scopes: []string{auth.ScopeRead}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialClient(t, m, "u1", fmt.Sprintf("dev%d", i), tt.kind, tt.scopes...)
			err := c.Call(t.Context(), "rpc.register", map[string]any{"methods": []string{"a.b"}}, nil)
			if got := codeOf(err); got != tt.want {
				t.Fatalf("rpc.register: got %q (%v), want %q", got, err, tt.want)
			}
		})
	}
	t.Run("bad names", func(t *testing.T) {
		c := dialClient(t, m, "u1", "devx", "machine")
		for _, tc := range []struct {
			methods []string
			code    protocol.Code
			field   string
		}{
			{[]string{"ok.one", "bad"}, protocol.CodeBadRequest, "methods[1]"},
			{[]string{"a." + strings.Repeat("x", 130)}, protocol.CodeBadRequest, "methods[0]"},
			{[]string{"a.b c"}, protocol.CodeBadRequest, "methods[0]"},
			{nil, protocol.CodeBadRequest, "methods"},
			{manyMethods(257), protocol.CodeTooLarge, "methods"},
		} {
			err := c.Call(t.Context(), "rpc.register", map[string]any{"methods": tc.methods}, nil)
			var pe *protocol.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || pe.Details["field"] != tc.field {
				t.Errorf("register %d names: got %v, want %s naming %s", len(tc.methods), err, tc.code, tc.field)
			}
		}
	})
}

func manyMethods(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m.x%d", i)
	}
	return out
}

func TestRPCProgressInOrder(t *testing.T) {
	m := rpcServer(t, nil)
	const n = 50
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{
		"cmd.run": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			for i := range n {
				if err := req.Progress(ctx, map[string]int{"line": i}); err != nil {
					return nil, err
				}
			}
			return map[string]int{"lines": n}, nil
		},
	})
	phone := dialClient(t, m, "u1", "phone1", "phone")
	var mu sync.Mutex
	var lines []int
	var res struct{ Lines int }
	err := phone.CallDevice(t.Context(), "mac1", "cmd.run", nil, &res, client.WithProgress(func(d json.RawMessage) {
		var p struct{ Line int }
		json.Unmarshal(d, &p)
		mu.Lock()
		lines = append(lines, p.Line)
		mu.Unlock()
	}))
	if err != nil || res.Lines != n {
		t.Fatalf("CallDevice: got %v, %+v, want nil, %d lines", err, res, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != n {
		t.Fatalf("progress events before the result: got %d, want %d", len(lines), n)
	}
	for i, l := range lines {
		if l != i {
			t.Fatalf("progress %d: got line %d, want %d (out of order)", i, l, i)
		}
	}
}

func TestRPCCancelReachesTarget(t *testing.T) {
	m := rpcServer(t, nil)
	started := make(chan struct{}, 1)
	cause := make(chan error, 1)
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{
		"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			cause <- context.Cause(ctx)
			return nil, ctx.Err()
		},
	})

	t.Run("sdk context cancel", func(t *testing.T) {
		phone := dialClient(t, m, "u1", "phone1", "phone")
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- phone.CallDevice(ctx, "mac1", "sys.block", nil, nil) }()
		<-started
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("CallDevice: got %v, want context.Canceled", err)
		}
		select {
		case err := <-cause:
			if err == nil {
				t.Fatalf("handler ctx cause: got nil, want a cancellation")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the target's handler was not cancelled")
		}
	})

	t.Run("wire rpc.cancel answers timeout cancelled", func(t *testing.T) {
		rc := dialRPCRaw(t, m, "u1", "phone2", "phone")
		rc.send(t, `{"type":"req","id":"c1","method":"rpc.call","params":{"target":{"deviceId":"mac1"},"method":"sys.block"}}`)
		<-started
		rc.send(t, `{"type":"req","id":"x1","method":"rpc.cancel","params":{"id":"c1"}}`)
		res := rc.response(t, "c1")
		if res.OK || res.Error.Code != protocol.CodeTimeout || res.Error.Message != "cancelled" || res.Error.Details["cancelled"] != true {
			t.Fatalf("cancelled call: got %+v, want error timeout \"cancelled\" with details.cancelled", res.Error)
		}
		if r := rc.response(t, "x1"); !r.OK {
			t.Fatalf("rpc.cancel: got %+v, want ok", r.Error)
		}
		<-cause
		rc.send(t, `{"type":"req","id":"x2","method":"rpc.cancel","params":{"id":"c1"}}`)
		if r := rc.response(t, "x2"); r.OK || r.Error.Code != protocol.CodeNotFound {
			t.Fatalf("rpc.cancel of a finished call: got %+v, want not_found", r)
		}
	})

	t.Run("caller disconnect cancels the target", func(t *testing.T) {
		rc := dialRPCRaw(t, m, "u1", "phone3", "phone")
		rc.send(t, `{"type":"req","id":"c1","method":"rpc.call","params":{"target":{"deviceId":"mac1"},"method":"sys.block"}}`)
		<-started
		rc.nc.Close()
		select {
		case err := <-cause:
			if err == nil {
				t.Fatalf("handler ctx cause: got nil, want a cancellation")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the target's handler was not cancelled when its caller disconnected")
		}
	})
}

func TestRPCTargetDisconnectsMidCall(t *testing.T) {
	m := rpcServer(t, func(c *hub.RPCConfig) { c.OfflineGrace = 10 * time.Second })
	started := make(chan struct{}, 1)
	mac := machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{
		"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		},
	})
	phone := dialClient(t, m, "u1", "phone1", "phone")
	errc := make(chan error, 1)
	go func() {
		errc <- phone.CallDevice(t.Context(), "mac1", "sys.block", nil, nil, client.WithCallTimeout(time.Minute))
	}()
	<-started
	go mac.Close()
	if err := <-errc; codeOf(err) != protocol.CodeUnavailable {
		t.Fatalf("call whose target disconnected: got %v, want unavailable", err)
	}
}

func TestRPCOfflineTargetReconnectsWithinGrace(t *testing.T) {
	m := rpcServer(t, func(c *hub.RPCConfig) { c.OfflineGrace = 20 * time.Second })
	phone := dialClient(t, m, "u1", "phone1", "phone")
	errc := make(chan error, 1)
	var got echoResult
	go func() { errc <- phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"a": 1}, &got) }()
	// The call waits for the machine (the relay's offline wait, not a
	// call that merely has not arrived yet); connect it now.
	eventually(t, "the call to wait for the offline machine", func() bool { return m.Hub.RPCWaiting("mac1") == 1 })
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"sys.echo": echo})
	if err := <-errc; err != nil {
		t.Fatalf("call to a machine that came online within the grace: got %v, want nil", err)
	}
	if n := m.Hub.RPCWaiting("mac1"); n != 0 {
		t.Errorf("calls still waiting for mac1: %d, want 0", n)
	}
	if string(got.Params) != `{"a":1}` {
		t.Errorf("params: got %s, want {\"a\":1}", got.Params)
	}
}

func TestRPCMalformedResponseIsInternal(t *testing.T) {
	m := rpcServer(t, nil)
	target := dialRPCRaw(t, m, "u1", "mac1", "machine")
	target.send(t, `{"type":"req","id":"r1","method":"rpc.register","params":{"methods":["bad.answer","odd.code"]}}`)
	if r := target.response(t, "r1"); !r.OK {
		t.Fatalf("register: got %+v", r.Error)
	}
	phone := dialClient(t, m, "u1", "phone1", "phone")
	for _, tc := range []struct{ method, answer string }{
		{"bad.answer", `{"type":"res","id":"%s"}`},
		{"odd.code", `{"type":"res","id":"%s","ok":false,"error":{"code":"weird","message":"x"}}`},
	} {
		errc := make(chan error, 1)
		go func() { errc <- phone.CallDevice(t.Context(), "mac1", tc.method, nil, nil) }()
		req := target.request(t)
		if req.Meta == nil || req.Meta.Caller == nil || req.Meta.Caller.DeviceID != "phone1" {
			t.Errorf("relayed request meta: got %+v, want caller phone1", req.Meta)
		}
		target.send(t, fmt.Sprintf(tc.answer, req.ID))
		if err := <-errc; codeOf(err) != protocol.CodeInternal {
			t.Errorf("%s: got %v, want internal", tc.method, err)
		}
	}
}

func TestRPCListAndPresence(t *testing.T) {
	m := rpcServer(t, nil)
	owner := dialRPCRaw(t, m, "u1", "phone1", "phone")
	owner.send(t, `{"type":"req","id":"sub","method":"channel.subscribe","params":{"topic":"user:u1"}}`)
	if f := owner.response(t, "sub"); !f.OK {
		t.Fatalf("subscribe user:u1: %+v", f.Error)
	}
	mac := machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"b.two": echo, "a.one": echo})
	st := owner.machineStatus(t, protocol.MachineOnline)
	if st.DeviceID != "mac1" || st.UserID != "u1" || st.Kind != "machine" {
		t.Errorf("machine online: got %+v, want mac1 of u1", st)
	}

	phone := dialClient(t, m, "u1", "phone2", "phone")
	var list protocol.RPCListResult
	if err := phone.Call(t.Context(), "rpc.list", map[string]any{"target": map[string]string{"deviceId": "mac1"}}, &list); err != nil {
		t.Fatalf("rpc.list: %v", err)
	}
	if strings.Join(list.Methods, ",") != "a.one,b.two" {
		t.Errorf("rpc.list: got %v, want [a.one b.two]", list.Methods)
	}
	stranger := dialClient(t, m, "u2", "phone3", "phone")
	err := stranger.Call(t.Context(), "rpc.list", map[string]any{"target": map[string]string{"deviceId": "mac1"}}, nil)
	if codeOf(err) != protocol.CodeForbidden {
		t.Errorf("rpc.list by another user: got %v, want forbidden", err)
	}
	if err := mac.Call(t.Context(), "rpc.unregister", map[string]any{"methods": []string{"a.one"}}, nil); err != nil {
		t.Fatalf("rpc.unregister: %v", err)
	}
	if err := phone.CallDevice(t.Context(), "mac1", "a.one", nil, nil); codeOf(err) != protocol.CodeUnknownMethod {
		t.Errorf("call after unregister: got %v, want unknown_method", err)
	}
	mac.Close()
	if st := owner.machineStatus(t, protocol.MachineOffline); st.DeviceID != "mac1" {
		t.Errorf("machine offline: got %+v, want mac1", st)
	}
	err = phone.Call(t.Context(), "rpc.list", map[string]any{"target": map[string]string{"deviceId": "mac1"}}, nil)
	if codeOf(err) != protocol.CodeUnavailable {
		t.Errorf("rpc.list of an offline machine: got %v, want unavailable", err)
	}
}

func TestRPCMachineReregistersAfterReconnect(t *testing.T) {
	m := rpcServer(t, func(c *hub.RPCConfig) { c.OfflineGrace = 20 * time.Second })
	mac := machine(t, m, "u1", "mac1", true, map[string]client.RPCHandler{"sys.echo": echo})
	phone := dialClient(t, m, "u1", "phone1", "phone")
	if err := phone.CallDevice(t.Context(), "mac1", "sys.echo", nil, nil); err != nil {
		t.Fatalf("first call: %v", err)
	}
	// Drop the machine's connection from the server side: 1012 advises a reconnect.
	m.Hub.CloseDevice("mac1", protocol.CloseRestart)
	// Calls made while it reconnects wait for it (offline grace).
	if err := phone.CallDevice(t.Context(), "mac1", "sys.echo", nil, nil); err != nil {
		t.Fatalf("call across the reconnect: %v", err)
	}
	_ = mac
}

func TestRPCNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		m := rpcServer(t, nil)
		block := make(chan struct{})
		mac := machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{
			"sys.echo": echo,
			"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
				select {
				case <-ctx.Done():
				case <-block:
				}
				return nil, ctx.Err()
			},
		})
		phone := dialClient(t, m, "u1", "phone1", "phone")
		for range 20 {
			phone.CallDevice(t.Context(), "mac1", "sys.echo", nil, nil)
			phone.CallDevice(t.Context(), "mac1", "sys.block", nil, nil, client.WithCallTimeout(20*time.Millisecond))
			phone.CallDevice(t.Context(), "ghost", "sys.echo", nil, nil, client.WithCallTimeout(20*time.Millisecond))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
			phone.CallDevice(ctx, "mac1", "sys.block", nil, nil)
			cancel()
		}
		close(block)
		mac.Close()
		phone.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Close(ctx)
	}()
	checkGoroutines(t, before)
}

// rpcRaw is a bare WebSocket client speaking protocol v1 by hand, for
// checks on the wire.
type rpcRaw struct {
	cc      *connCheck // the wire contract check of the server
	nc      net.Conn
	r       io.Reader // nc, after what the dialer buffered with the handshake
	frames  chan *protocol.Frame
	mu      sync.Mutex
	backlog []*protocol.Frame // frames read while waiting for others
}

func dialRPCRaw(t *testing.T, m *Main, user, device, kind string, scopes ...string) *rpcRaw {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + mintToken(t, m, user, device, kind, scopes...)}}
	nc, br, _, err := ws.Dialer{Header: ws.HandshakeHeaderHTTP(h)}.Dial(t.Context(), m.WSURL()+"/ws")
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	rc := &rpcRaw{cc: wireCheckOf(m).conn(false), nc: nc, r: nc, frames: make(chan *protocol.Frame, 1024)}
	if br != nil {
		// The server's first frames may have arrived with the handshake.
		rc.r = io.MultiReader(br, nc)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(rc.frames)
		for {
			msg, err := wsutil.ReadServerText(rpcLockedRW{rc})
			if err != nil {
				return
			}
			rc.cc.message(false, msg)
			protocol.Split(msg, func(b []byte) {
				if f, err := protocol.Decode(b); err == nil {
					rc.frames <- f
				}
			})
		}
	}()
	t.Cleanup(func() { nc.Close(); <-done })
	return rc
}

// rpcLockedRW serialises the reader's control answers with send.
type rpcLockedRW struct{ rc *rpcRaw }

func (l rpcLockedRW) Read(p []byte) (int, error) { return l.rc.r.Read(p) }
func (l rpcLockedRW) Write(p []byte) (int, error) {
	l.rc.mu.Lock()
	defer l.rc.mu.Unlock()
	return l.rc.nc.Write(p)
}

func (rc *rpcRaw) send(t *testing.T, frame string) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.cc.message(true, []byte(frame))
	if err := wsutil.WriteClientText(rc.nc, []byte(frame)); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

func (rc *rpcRaw) next(t *testing.T, what string, match func(*protocol.Frame) bool) *protocol.Frame {
	t.Helper()
	for i, f := range rc.backlog {
		if match(f) {
			rc.backlog = append(rc.backlog[:i], rc.backlog[i+1:]...)
			return f
		}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f, ok := <-rc.frames:
			if !ok {
				t.Fatalf("raw conn closed while waiting for %s", what)
			}
			if match(f) {
				return f
			}
			rc.backlog = append(rc.backlog, f)
		case <-timeout:
			t.Fatalf("no %s within 10s", what)
		}
	}
}

func (rc *rpcRaw) response(t *testing.T, id string) *protocol.Frame {
	t.Helper()
	return rc.next(t, "response "+id, func(f *protocol.Frame) bool { return f.Type == protocol.TypeResponse && f.ID == id })
}

func (rc *rpcRaw) request(t *testing.T) *protocol.Frame {
	t.Helper()
	return rc.next(t, "request", func(f *protocol.Frame) bool { return f.Type == protocol.TypeRequest })
}

// machineStatus waits for a machine status publication on the user's channel.
func (rc *rpcRaw) machineStatus(t *testing.T, status string) protocol.MachineStatus {
	t.Helper()
	var st protocol.MachinePublication
	rc.next(t, "machine "+status, func(f *protocol.Frame) bool {
		if f.Event != hub.EventChannelMessage || !strings.HasPrefix(f.Topic, "user:") {
			return false
		}
		st = protocol.MachinePublication{}
		return json.Unmarshal(f.Data, &st) == nil && st.Machine != nil && st.Machine.Status == status
	})
	return *st.Machine
}

func (rc *rpcRaw) event(t *testing.T, name string) *protocol.Frame {
	t.Helper()
	return rc.next(t, "event "+name, func(f *protocol.Frame) bool { return f.Type == protocol.TypeEvent && f.Event == name })
}
