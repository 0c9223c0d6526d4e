package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// fakeCluster is an in-process "cluster" for the Directory: device leases
// and node messages are shared by every node's directory, the rest stays
// per node (the memory broker). Node messages are delivered asynchronously, in
// order per destination node, as a networked broker would.
type fakeCluster struct {
	mu     sync.Mutex
	leases map[string]fakeLease       // device → claim
	gen    uint64                     // the last claim's generation
	nodes  map[string]*fakeNodeBroker // node → broker
	sent   map[string]int             // kind of node message → count
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{leases: map[string]fakeLease{}, nodes: map[string]*fakeNodeBroker{}, sent: map[string]int{}}
}

func (fc *fakeCluster) sentKinds() map[string]int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := map[string]int{}
	for k, v := range fc.sent {
		out[k] = v
	}
	return out
}

type fakeLease struct {
	node string
	gen  uint64
}

// fakeNodeBroker is one node's view of the fake cluster: its Directory.
type fakeNodeBroker struct {
	fc    *fakeCluster
	node  string
	inbox chan json.RawMessage
	stop  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once

	// The node's channel as hub.NodeReceiver reports it: rxGen counts
	// (re)subscriptions, rxDown says it is down; tests set them.
	rxMu   sync.Mutex
	rxGen  uint64
	rxDown bool
}

var _ hub.NodeReceiver = (*fakeNodeBroker)(nil)

func (b *fakeNodeBroker) Receiving() (uint64, bool) {
	b.rxMu.Lock()
	defer b.rxMu.Unlock()
	return b.rxGen, !b.rxDown
}

// setRx sets what Receiving reports.
func (b *fakeNodeBroker) setRx(gen uint64, down bool) {
	b.rxMu.Lock()
	b.rxGen, b.rxDown = gen, down
	b.rxMu.Unlock()
}

var _ hub.Directory = (*fakeNodeBroker)(nil)

// broker returns node's broker: the memory one with the fake directory.
func (fc *fakeCluster) broker(node string) hub.Broker {
	b := &fakeNodeBroker{fc: fc, node: node, rxGen: 1,
		inbox: make(chan json.RawMessage, 4096), stop: make(chan struct{})}
	fc.mu.Lock()
	fc.nodes[node] = b
	fc.mu.Unlock()
	mb := hub.NewMemoryBroker(node).Broker()
	mb.Directory = b
	return mb
}

func (b *fakeNodeBroker) Receive(ctx context.Context, h hub.NodeHandler) error {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			select {
			case msg := <-b.inbox:
				h.HandleNodeMessage(msg)
			case <-b.stop:
				return
			}
		}
	}()
	return nil
}

func (b *fakeNodeBroker) Close() error {
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
	})
	return nil
}

func (b *fakeNodeBroker) ClaimDevice(_ context.Context, device, node string, _ time.Duration) (uint64, string, error) {
	b.fc.mu.Lock()
	defer b.fc.mu.Unlock()
	b.fc.gen++
	prev := b.fc.leases[device].node
	b.fc.leases[device] = fakeLease{node, b.fc.gen}
	return b.fc.gen, prev, nil
}

func (b *fakeNodeBroker) RefreshDevice(_ context.Context, device, node string, gen uint64, _ time.Duration) (bool, error) {
	b.fc.mu.Lock()
	defer b.fc.mu.Unlock()
	l, ok := b.fc.leases[device]
	if ok && (l.node != node || l.gen != gen) {
		return false, nil
	}
	b.fc.leases[device] = fakeLease{node, gen}
	return true, nil
}

func (b *fakeNodeBroker) ClearDevice(_ context.Context, device, node string, gen uint64) error {
	b.fc.mu.Lock()
	defer b.fc.mu.Unlock()
	if l := b.fc.leases[device]; l.node == node && l.gen == gen {
		delete(b.fc.leases, device)
	}
	return nil
}

func (b *fakeNodeBroker) DeviceNode(_ context.Context, device string) (string, bool, error) {
	b.fc.mu.Lock()
	defer b.fc.mu.Unlock()
	l, ok := b.fc.leases[device]
	return l.node, ok, nil
}

func (b *fakeNodeBroker) NodeAlive(_ context.Context, node string) (bool, error) {
	b.fc.mu.Lock()
	defer b.fc.mu.Unlock()
	_, ok := b.fc.nodes[node]
	return ok, nil
}

func (b *fakeNodeBroker) SendToNode(ctx context.Context, node string, msg json.RawMessage) error {
	var probe struct{ Kind string }
	json.Unmarshal(msg, &probe)
	b.fc.mu.Lock()
	dst := b.fc.nodes[node]
	b.fc.sent[probe.Kind]++
	b.fc.mu.Unlock()
	if dst == nil {
		return fmt.Errorf("fake cluster: no node %q", node)
	}
	select {
	case dst.inbox <- append(json.RawMessage(nil), msg...):
		return nil
	case <-dst.stop:
		return hub.ErrBrokerClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// testNode is one hub serving WebSockets on a loopback port. The test
// "token" is "user/device/kind/scope,scope".
type testNode struct {
	hub *hub.Hub
	srv *httptest.Server
	url string
}

func startNode(t testing.TB, cfg hub.Config, broker hub.Broker) *testNode {
	t.Helper()
	if cfg.RPC.OfflineGrace == 0 {
		cfg.RPC.OfflineGrace = 300 * time.Millisecond
	}
	cfg.RequestsPerSecond = -1
	h, err := hub.New(cfg, hub.Deps{Broker: broker})
	if err != nil {
		t.Fatalf("hub.New: %v", err)
	}
	if err := h.Start(); err != nil {
		t.Fatalf("hub.Start: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		parts := strings.Split(tok, "/")
		if len(parts) != 4 {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		p := &auth.Principal{UserID: parts[0], DeviceID: parts[1], Kind: parts[2], Scopes: strings.Split(parts[3], ",")}
		h.Upgrade(w, r, p, protocol.Subprotocol)
	}))
	n := &testNode{hub: h, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http")}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		h.Close()
		srv.Close()
	})
	return n
}

func (n *testNode) dial(t testing.TB, user, device, kind string, serve map[string]client.RPCHandler, options ...func(*client.Options)) *client.Client {
	t.Helper()
	opts := client.Options{URL: n.url, Token: user + "/" + device + "/" + kind + "/read,write", CallTimeout: 30 * time.Second}
	for _, fn := range options {
		fn(&opts)
	}
	c := client.New(opts)
	for name, fn := range serve {
		c.Serve(name, fn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("connect %s: %v", device, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func codeOf(err error) protocol.Code {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestRPCAcrossNodes runs a caller on node A and its machine on node B,
// sharing a fake cluster broker: every call must take the node-message
// path (SendToNode / HandleNodeMessage), which is all a Redis broker has to
// carry.
func TestRPCAcrossNodes(t *testing.T) {
	fc := newFakeCluster()
	a := startNode(t, hub.Config{NodeID: "A"}, fc.broker("A"))
	b := startNode(t, hub.Config{NodeID: "B", RPC: hub.RPCConfig{
		Grants: []hub.RPCGrant{{FromUser: "friend", ToUser: "u1", Methods: []string{"pub.*"}}},
	}}, fc.broker("B"))

	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	b.dial(t, "u1", "mac1", "machine", map[string]client.RPCHandler{
		"sys.echo": func(_ context.Context, req *client.RPCRequest) (any, error) {
			return map[string]any{"params": req.Params, "caller": req.Caller}, nil
		},
		"pub.echo": func(context.Context, *client.RPCRequest) (any, error) { return "ok", nil },
		"cmd.stream": func(ctx context.Context, req *client.RPCRequest) (any, error) {
			for i := range 20 {
				req.Progress(ctx, i)
			}
			return "done", nil
		},
		"sys.fail": func(context.Context, *client.RPCRequest) (any, error) {
			return nil, protocol.Errorf(protocol.CodeNotFound, "no such file")
		},
		"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			cancelled <- struct{}{}
			return nil, ctx.Err()
		},
	})
	phone := a.dial(t, "u1", "phone1", "phone", nil)
	stranger := a.dial(t, "u2", "phone2", "phone", nil)
	friend := a.dial(t, "friend", "phone3", "phone", nil)

	t.Run("result and caller meta", func(t *testing.T) {
		var got struct {
			Params json.RawMessage
			Caller protocol.Caller
		}
		if err := phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"x": 1}, &got); err != nil {
			t.Fatalf("CallDevice: got %v, want nil", err)
		}
		if string(got.Params) != `{"x":1}` || got.Caller.UserID != "u1" || got.Caller.DeviceID != "phone1" {
			t.Errorf("relayed: got %s %+v, want {\"x\":1} from u1/phone1", got.Params, got.Caller)
		}
	})
	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			caller *client.Client
			method string
			want   protocol.Code
		}{
			{"target error kept", phone, "sys.fail", protocol.CodeNotFound},
			{"unknown method", phone, "sys.nope", protocol.CodeUnknownMethod},
			{"cross user", stranger, "sys.echo", protocol.CodeForbidden},
			{"granted", friend, "pub.echo", ""},
			{"grant does not cover", friend, "sys.echo", protocol.CodeForbidden},
		} {
			err := tc.caller.CallDevice(t.Context(), "mac1", tc.method, nil, nil)
			if got := codeOf(err); got != tc.want {
				t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.want)
			}
		}
	})
	t.Run("progress in order", func(t *testing.T) {
		var got []int
		var res string
		err := phone.CallDevice(t.Context(), "mac1", "cmd.stream", nil, &res, client.WithProgress(func(d json.RawMessage) {
			var i int
			json.Unmarshal(d, &i)
			got = append(got, i)
		}))
		if err != nil || res != "done" {
			t.Fatalf("CallDevice: got %v %q, want nil \"done\"", err, res)
		}
		if len(got) != 20 {
			t.Fatalf("progress: got %d events, want 20", len(got))
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("progress %d: got %d, want %d", i, v, i)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		var list protocol.RPCListResult
		if err := friend.Call(t.Context(), "rpc.list", map[string]any{"target": map[string]string{"deviceId": "mac1"}}, &list); err != nil {
			t.Fatalf("rpc.list: %v", err)
		}
		if strings.Join(list.Methods, ",") != "pub.echo" {
			t.Errorf("rpc.list by a grantee: got %v, want only [pub.echo]", list.Methods)
		}
	})
	t.Run("cancel crosses nodes", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() { errc <- phone.CallDevice(ctx, "mac1", "sys.block", nil, nil) }()
		<-started
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("CallDevice: got %v, want context.Canceled", err)
		}
		select {
		case <-cancelled:
		case <-time.After(10 * time.Second):
			t.Fatal("the target's handler was not cancelled across nodes")
		}
	})
	t.Run("timeout crosses nodes", func(t *testing.T) {
		err := phone.CallDevice(t.Context(), "mac1", "sys.block", nil, nil, client.WithCallTimeout(100*time.Millisecond))
		if codeOf(err) != protocol.CodeTimeout {
			t.Fatalf("CallDevice: got %v, want timeout", err)
		}
		<-started
		<-cancelled
	})
	sent := fc.sentKinds()
	for _, kind := range []string{"rpc.call", "rpc.result", "rpc.progress", "rpc.cancel", "rpc.list"} {
		if sent[kind] == 0 {
			t.Errorf("node messages of kind %s: got 0, want some (sent: %v)", kind, sent)
		}
	}
}

func TestRPCAcrossNodesOfflineAndDisconnect(t *testing.T) {
	fc := newFakeCluster()
	a := startNode(t, hub.Config{NodeID: "A"}, fc.broker("A"))
	b := startNode(t, hub.Config{NodeID: "B"}, fc.broker("B"))
	_ = b
	phone := a.dial(t, "u1", "phone1", "phone", nil)

	t.Run("offline after grace", func(t *testing.T) {
		err := phone.CallDevice(t.Context(), "mac9", "sys.echo", nil, nil)
		if codeOf(err) != protocol.CodeUnavailable {
			t.Fatalf("got %v, want unavailable", err)
		}
	})
	t.Run("comes online on the other node within grace", func(t *testing.T) {
		// A long grace on the caller's node; the poll finds the lease.
		a2 := startNode(t, hub.Config{NodeID: "A2", RPC: hub.RPCConfig{OfflineGrace: 20 * time.Second}}, fc.broker("A2"))
		p2 := a2.dial(t, "u1", "phone2", "phone", nil)
		forwarded := fc.sentKinds()["rpc.call"]
		errc := make(chan error, 1)
		go func() { errc <- p2.CallDevice(t.Context(), "mac2", "sys.echo", nil, nil) }()
		// The call is in A2's offline wait before mac2 connects to B.
		eventually(t, "the call to wait for mac2", func() bool { return a2.hub.RPCWaiting("mac2") == 1 })
		b.dial(t, "u1", "mac2", "machine", map[string]client.RPCHandler{
			"sys.echo": func(context.Context, *client.RPCRequest) (any, error) { return 1, nil },
		})
		if err := <-errc; err != nil {
			t.Fatalf("got %v, want nil", err)
		}
		// Found on the other node by the poll, and relayed there.
		if n := fc.sentKinds()["rpc.call"]; n <= forwarded {
			t.Errorf("rpc.call node messages: %d before, %d after; want the call forwarded to B", forwarded, n)
		}
		if n := a2.hub.RPCWaiting("mac2"); n != 0 {
			t.Errorf("calls still waiting for mac2: %d, want 0", n)
		}
	})
	t.Run("target disconnects mid-call", func(t *testing.T) {
		started := make(chan struct{}, 1)
		mac := b.dial(t, "u1", "mac3", "machine", map[string]client.RPCHandler{
			"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
				started <- struct{}{}
				<-ctx.Done()
				return nil, ctx.Err()
			},
		})
		errc := make(chan error, 1)
		go func() {
			errc <- phone.CallDevice(t.Context(), "mac3", "sys.block", nil, nil, client.WithCallTimeout(time.Minute))
		}()
		<-started
		go mac.Close()
		if err := <-errc; codeOf(err) != protocol.CodeUnavailable {
			t.Fatalf("got %v, want unavailable", err)
		}
	})
}

// TestRPCAnswerChannelDown: a node whose own channel is down (reconnecting
// to the broker: answers sent to it would be lost) refuses to forward a
// call, unavailable at once, without reaching the target; a forwarded call
// waiting while the channel broke and came back (a new generation: its
// answer may have been lost) fails with unavailable at its next node check,
// not at its timeout, and the target's handler is cancelled.
func TestRPCAnswerChannelDown(t *testing.T) {
	fc := newFakeCluster()
	a := startNode(t, hub.Config{NodeID: "A"}, fc.broker("A"))
	b := startNode(t, hub.Config{NodeID: "B"}, fc.broker("B"))
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{}, 1)
	var served sync.Map
	b.dial(t, "u1", "mac1", "machine", map[string]client.RPCHandler{
		"sys.echo": func(_ context.Context, req *client.RPCRequest) (any, error) {
			served.Store(string(req.Params), true)
			return "ok", nil
		},
		"sys.block": func(ctx context.Context, _ *client.RPCRequest) (any, error) {
			started <- struct{}{}
			<-ctx.Done()
			cancelled <- struct{}{}
			return nil, ctx.Err()
		},
	})
	phone := a.dial(t, "u1", "phone1", "phone", nil)
	if err := phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"n": 1}, nil); err != nil {
		t.Fatalf("call with the channel up: %v", err)
	}
	fc.mu.Lock()
	nodeA := fc.nodes["A"]
	fc.mu.Unlock()

	nodeA.setRx(1, true)
	err := phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"n": 2}, nil)
	if codeOf(err) != protocol.CodeUnavailable || !strings.Contains(err.Error(), "cannot receive answers") {
		t.Fatalf("call with A's channel down: %v, want unavailable naming the answer channel", err)
	}
	if _, ok := served.Load(`{"n":2}`); ok {
		t.Fatal("the call left although its answer could not arrive")
	}

	nodeA.setRx(1, false)
	errc := make(chan error, 1)
	go func() {
		errc <- phone.CallDevice(t.Context(), "mac1", "sys.block", nil, nil, client.WithCallTimeout(time.Minute))
	}()
	<-started
	nodeA.setRx(2, false) // broke and came back while the call waited
	if err := <-errc; codeOf(err) != protocol.CodeUnavailable || !strings.Contains(err.Error(), "cannot receive answers") {
		t.Fatalf("call waiting across a resubscription: %v, want unavailable (not its timeout)", err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the target's handler was not cancelled")
	}
	if err := phone.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{"n": 3}, nil); err != nil {
		t.Fatalf("call with the channel up again: %v", err)
	}
}
