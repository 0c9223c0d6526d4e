package main

// End-to-end tests of the admin API (docs/api.md, "Admin"): the REST
// routes under /api/v1/admin and the admin:stats stream, through the real
// server with real WebSocket clients. Every body and frame is checked
// against the served OpenAPI and AsyncAPI documents (contract_check_test.go).

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// TestAdminNeedsAdminScope: every admin route answers 401 without a
// credential and 403 forbidden, naming the scope, for a principal without
// scope admin.
func TestAdminNeedsAdminScope(t *testing.T) {
	m := startServer(t, nil)
	user := mintToken(t, m, "u1", "d1", "phone", auth.ScopeRead, auth.ScopeWrite)
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/v1/admin/connections"},
		{"GET", "/api/v1/admin/connections/c-x"},
		{"DELETE", "/api/v1/admin/connections/c-x"},
		{"GET", "/api/v1/admin/channels"},
		{"GET", "/api/v1/admin/channels/public:x"},
		{"GET", "/api/v1/admin/machines"},
		{"GET", "/api/v1/admin/accounts"},
		{"GET", "/api/v1/admin/accounts/a1/devices"},
		{"DELETE", "/api/v1/admin/accounts/a1/devices/d1"},
		{"GET", "/api/v1/admin/lockdown"},
		{"POST", "/api/v1/admin/lockdown"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			if status, raw := apiCall(t, m, "", r.method, r.path, nil); status != 401 || decodeAPIError(t, raw).Error.Code != "unauthorized" {
				t.Errorf("without a credential: status %d body %s, want 401 unauthorized", status, raw)
			}
			status, raw := apiCall(t, m, user, r.method, r.path, nil)
			e := decodeAPIError(t, raw)
			if status != 403 || e.Error.Code != "forbidden" || !strings.Contains(e.Error.Message, `scope "admin"`) {
				t.Errorf("without scope admin: status %d body %s, want 403 forbidden naming scope admin", status, raw)
			}
		})
	}
}

// TestAdminConnections lists, filters, pages, inspects and disconnects
// real WebSocket clients.
func TestAdminConnections(t *testing.T) {
	m := startServer(t, nil)
	admin := adminTok(t, m)
	phone := dialClient(t, m, "u1", "p1", "phone")
	browser := dialClient(t, m, "u2", "b1", "browser")
	mac := machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"sys.echo": echo, "fs.read": echo})
	if _, err := phone.Subscribe(t.Context(), "public:lobby", func(client.Publication) {}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	ids := map[string]string{"phone": phone.Welcome().ConnID, "browser": browser.Welcome().ConnID, "machine": mac.Welcome().ConnID}
	all := slices.Sorted(func(yield func(string) bool) {
		for _, id := range ids {
			if !yield(id) {
				return
			}
		}
	})

	list := func(query string) protocol.AdminConnectionList {
		t.Helper()
		var l protocol.AdminConnectionList
		apiJSON(t, m, admin, "GET", "/api/v1/admin/connections"+query, nil, 200, &l)
		return l
	}
	idsOf := func(l protocol.AdminConnectionList) []string {
		var out []string
		for _, c := range l.Items {
			out = append(out, c.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"all", "", all},
		{"user", "?user=u1", slices.Sorted(slices.Values([]string{ids["phone"], ids["machine"]}))},
		{"device", "?device=b1", []string{ids["browser"]}},
		{"device of another user", "?device=b1&user=u1", nil},
		{"kind", "?kind=machine", []string{ids["machine"]}},
		{"kind with user", "?kind=phone&user=u1", []string{ids["phone"]}},
		{"kind nobody has", "?kind=tv", nil},
		{"this node", "?node=" + url.QueryEscape(m.Hub.NodeID()), all},
		{"another node", "?node=n-elsewhere", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := list(tc.query)
			if got := idsOf(l); !slices.Equal(got, tc.want) {
				t.Errorf("connections%s: got %v, want %v", tc.query, got, tc.want)
			}
			if l.NextCursor != "" {
				t.Errorf("connections%s: nextCursor %q on the last page, want none", tc.query, l.NextCursor)
			}
		})
	}

	// One at a time: each page holds the next id, the last has no cursor.
	var paged []string
	cursor := ""
	for range 5 {
		l := list("?limit=1&cursor=" + url.QueryEscape(cursor))
		paged = append(paged, idsOf(l)...)
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged by 1: got %v, want %v", paged, all)
	}

	first := list("?device=p1").Items[0]
	if first.Principal.UserID != "u1" || first.Principal.Kind != "phone" || first.NodeID != m.Hub.NodeID() ||
		!strings.HasPrefix(first.RemoteAddr, "127.0.0.1:") || time.Since(first.ConnectedAt) > time.Minute || time.Since(first.ConnectedAt) < 0 {
		t.Errorf("phone's entry: got %+v, want user u1, kind phone, this node, a loopback address and a recent connectedAt", first)
	}

	for _, bad := range []string{"?kind=toaster", "?limit=0", "?limit=1001", "?limit=x", "?cursor=" + strings.Repeat("c", 257)} {
		status, raw := apiCall(t, m, admin, "GET", "/api/v1/admin/connections"+bad, nil)
		if status != 400 || decodeAPIError(t, raw).Error.Code != "bad_request" {
			t.Errorf("connections%s: status %d body %s, want 400 bad_request", bad[:min(len(bad), 20)], status, raw)
		}
	}

	var d protocol.AdminConnectionDetail
	apiJSON(t, m, admin, "GET", "/api/v1/admin/connections/"+ids["phone"], nil, 200, &d)
	if d.ID != ids["phone"] || !slices.Equal(d.Subscriptions, []string{"public:lobby"}) || len(d.Methods) != 0 || d.QueueFrames < 0 {
		t.Errorf("phone's detail: got %+v, want its id, subscriptions [public:lobby], no methods", d)
	}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/connections/"+ids["machine"], nil, 200, &d)
	if !slices.Equal(d.Methods, []string{"fs.read", "sys.echo"}) || len(d.Subscriptions) != 0 {
		t.Errorf("machine's detail: got %+v, want methods [fs.read sys.echo] and no subscriptions", d)
	}
	if status, raw := apiCall(t, m, admin, "GET", "/api/v1/admin/connections/c-nosuch", nil); status != 404 || decodeAPIError(t, raw).Error.Code != "not_found" {
		t.Errorf("unknown connection: status %d body %s, want 404 not_found", status, raw)
	}

	// Disconnect: the client is closed with 4011 and leaves the list.
	var gone protocol.AdminDisconnected
	apiJSON(t, m, admin, "DELETE", "/api/v1/admin/connections/"+ids["browser"], nil, 200, &gone)
	if gone.ID != ids["browser"] || gone.Code != protocol.CloseAdmin {
		t.Errorf("disconnect: got %+v, want id %s code %d", gone, ids["browser"], protocol.CloseAdmin)
	}
	select {
	case <-browser.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the disconnected client is still open")
	}
	if got := browser.CloseCode(); got != protocol.CloseAdmin {
		t.Errorf("client's close code: got %d, want %d", got, protocol.CloseAdmin)
	}
	eventually(t, "the disconnected connection to leave the list", func() bool {
		return !slices.Contains(idsOf(list("")), ids["browser"])
	})
	if status, _ := apiCall(t, m, admin, "DELETE", "/api/v1/admin/connections/"+ids["browser"], nil); status != 404 {
		t.Errorf("disconnect twice: status %d, want 404", status)
	}
	if d, ok := protocol.DisconnectFor(protocol.CloseAdmin); !ok || d.Reconnect.Advised() {
		t.Errorf("close code %d: got %+v, %v; want a known code that advises not to reconnect", protocol.CloseAdmin, d, ok)
	}
}

// TestAdminChannelsAndMachines lists the channels with subscribers and the
// machines serving, and inspects a channel with presence and history.
func TestAdminChannelsAndMachines(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"},
		Presence: true, HistorySize: 10}))
	admin := adminTok(t, m)
	a := dialClient(t, m, "u1", "a1", "phone")
	b := dialClient(t, m, "u2", "b1", "tablet")
	for _, c := range []*client.Client{a, b} {
		if _, err := c.Subscribe(t.Context(), "room:r1", func(client.Publication) {}); err != nil {
			t.Fatalf("subscribe room:r1: %v", err)
		}
	}
	if _, err := b.Subscribe(t.Context(), "public:news", func(client.Publication) {}); err != nil {
		t.Fatalf("subscribe public:news: %v", err)
	}
	for i := range 3 {
		if _, _, err := a.Publish(t.Context(), "room:r1", map[string]int{"n": i}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	var l protocol.AdminChannelList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/channels", nil, 200, &l)
	want := []protocol.AdminChannel{{Topic: "public:news", NodeID: m.Hub.NodeID(), Subscribers: 1}, {Topic: "room:r1", NodeID: m.Hub.NodeID(), Subscribers: 2}}
	if !slices.Equal(l.Items, want) || l.NextCursor != "" {
		t.Errorf("channels: got %+v, want %+v and no cursor", l, want)
	}
	l = protocol.AdminChannelList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/channels?limit=1", nil, 200, &l)
	if len(l.Items) != 1 || l.Items[0].Topic != "public:news" || l.NextCursor != "public:news" {
		t.Errorf("channels page 1: got %+v, want public:news and a cursor", l)
	}
	next := l.NextCursor
	l = protocol.AdminChannelList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/channels?limit=1&cursor="+url.QueryEscape(next), nil, 200, &l)
	if len(l.Items) != 1 || l.Items[0].Topic != "room:r1" || l.NextCursor != "" {
		t.Errorf("channels page 2: got %+v, want room:r1 and no cursor", l)
	}

	var d protocol.AdminChannelDetail
	apiJSON(t, m, admin, "GET", "/api/v1/admin/channels/room:r1", nil, 200, &d)
	conns := slices.Sorted(slices.Values([]string{a.Welcome().ConnID, b.Welcome().ConnID}))
	if d.Subscribers != 2 || !slices.Equal(d.Connections, conns) || d.Offset != 3 || d.Epoch == "" || d.HistorySize != 10 {
		t.Errorf("room:r1: got %+v, want 2 subscribers %v, offset 3, history 10", d, conns)
	}
	eventually(t, "both clients in room:r1's presence", func() bool {
		d = protocol.AdminChannelDetail{}
		apiJSON(t, m, admin, "GET", "/api/v1/admin/channels/room:r1", nil, 200, &d)
		_, okA := d.Presence[a.Welcome().ConnID]
		_, okB := d.Presence[b.Welcome().ConnID]
		return len(d.Presence) == 2 && okA && okB
	})
	d = protocol.AdminChannelDetail{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/channels/public:quiet", nil, 200, &d)
	if d.Subscribers != 0 || len(d.Connections) != 0 || d.Presence != nil || d.Offset != 0 {
		t.Errorf("a channel without subscribers: got %+v, want none, no presence, offset 0", d)
	}
	for _, tc := range []struct {
		topic, code string
		status      int
	}{{"nons:x", "not_found", 404}, {"a%20b", "bad_request", 400}} {
		if status, raw := apiCall(t, m, admin, "GET", "/api/v1/admin/channels/"+tc.topic, nil); status != tc.status || decodeAPIError(t, raw).Error.Code != tc.code {
			t.Errorf("channel %s: status %d body %s, want %d %s", tc.topic, status, raw, tc.status, tc.code)
		}
	}

	mac1 := machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"sys.echo": echo, "fs.read": echo})
	mac2 := machine(t, m, "u2", "mac2", false, map[string]client.RPCHandler{"x.y": echo})
	var ml protocol.AdminMachineList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/machines", nil, 200, &ml)
	wantM := []protocol.AdminMachine{
		{DeviceID: "mac1", UserID: "u1", Kind: "machine", ConnID: mac1.Welcome().ConnID, NodeID: m.Hub.NodeID(), Methods: []string{"fs.read", "sys.echo"}},
		{DeviceID: "mac2", UserID: "u2", Kind: "machine", ConnID: mac2.Welcome().ConnID, NodeID: m.Hub.NodeID(), Methods: []string{"x.y"}},
	}
	if !machinesEqual(ml.Items, wantM) || ml.NextCursor != "" {
		t.Errorf("machines: got %+v, want %+v", ml, wantM)
	}
	ml = protocol.AdminMachineList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/machines?user=u2", nil, 200, &ml)
	if !machinesEqual(ml.Items, wantM[1:]) {
		t.Errorf("machines of u2: got %+v, want %+v", ml.Items, wantM[1:])
	}
	ml = protocol.AdminMachineList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/machines?limit=1", nil, 200, &ml)
	if !machinesEqual(ml.Items, wantM[:1]) || ml.NextCursor != "mac1" {
		t.Errorf("machines page 1: got %+v, want mac1 and a cursor", ml)
	}
	ml = protocol.AdminMachineList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/machines?limit=1&cursor=mac1", nil, 200, &ml)
	if !machinesEqual(ml.Items, wantM[1:]) || ml.NextCursor != "" {
		t.Errorf("machines page 2: got %+v, want mac2 and no cursor", ml)
	}
	_ = mac2.Close()
	eventually(t, "a closed machine to leave the list", func() bool {
		ml = protocol.AdminMachineList{}
		apiJSON(t, m, admin, "GET", "/api/v1/admin/machines", nil, 200, &ml)
		return machinesEqual(ml.Items, wantM[:1])
	})
	if status, _ := apiCall(t, m, admin, "GET", "/api/v1/admin/machines?limit=-1", nil); status != 400 {
		t.Errorf("machines?limit=-1: status %d, want 400", status)
	}
	if status, _ := apiCall(t, m, admin, "GET", "/api/v1/admin/channels?limit=2000", nil); status != 400 {
		t.Errorf("channels?limit=2000: status %d, want 400", status)
	}
}

func machinesEqual(a, b []protocol.AdminMachine) bool {
	return slices.EqualFunc(a, b, func(x, y protocol.AdminMachine) bool {
		return x.DeviceID == y.DeviceID && x.UserID == y.UserID && x.Kind == y.Kind && x.ConnID == y.ConnID &&
			x.NodeID == y.NodeID && slices.Equal(x.Methods, y.Methods)
	})
}

// adminStatsSchema compiles the AdminStats schema of the AsyncAPI
// document m serves.
func adminStatsSchema(t *testing.T, m *Main) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(fetchDoc(t, m, "/api/v1/asyncapi.json")))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource("mem://asyncapi.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("mem://asyncapi.json#/components/schemas/AdminStats")
	if err != nil {
		t.Fatalf("the AsyncAPI document's AdminStats: %v", err)
	}
	return sch
}

// TestAdminStatsStream: an admin subscribes to admin:stats and sees, once
// a second, the node's connections by kind and the publications,
// deliveries, requests and RPC calls made after it subscribed; nobody may
// publish there, and only admins subscribe.
func TestAdminStatsStream(t *testing.T) {
	m := rpcServer(t, nil)
	sch := adminStatsSchema(t, m)
	console := dialClient(t, m, "u-admin", "d-console", "browser", auth.ScopeAdmin)

	var (
		mu    sync.Mutex
		stats []protocol.AdminStats
	)
	got := make(chan struct{}, 64)
	_, err := console.Subscribe(t.Context(), protocol.AdminStatsTopic, func(p client.Publication) {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(p.Data))
		if err == nil {
			err = sch.Validate(inst)
		}
		if err != nil {
			t.Errorf("admin:stats data does not match AdminStats: %v: %s", err, p.Data)
		}
		var st protocol.AdminStats
		if err := json.Unmarshal(p.Data, &st); err != nil {
			t.Errorf("admin:stats data: %v", err)
			return
		}
		mu.Lock()
		stats = append(stats, st)
		mu.Unlock()
		select {
		case got <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("admin subscribes to admin:stats: %v", err)
	}

	user := dialClient(t, m, "u1", "p1", "phone")
	if _, err := user.Subscribe(t.Context(), protocol.AdminStatsTopic, func(client.Publication) {}); codeOf(err) != protocol.CodeForbidden {
		t.Errorf("a user subscribes to admin:stats: got %v, want forbidden", err)
	}
	for _, c := range []*client.Client{user, console} {
		if _, _, err := c.Publish(t.Context(), protocol.AdminStatsTopic, map[string]int{"connections": 0}); codeOf(err) != protocol.CodeForbidden {
			t.Errorf("publish to admin:stats as %s: got %v, want forbidden", c.Welcome().Principal.UserID, err)
		}
	}
	if status, _ := apiCall(t, m, adminTok(t, m), "POST", "/api/v1/channels/admin:stats/publish", map[string]any{"data": 1}); status != 403 {
		t.Errorf("REST publish to admin:stats as an admin: status %d, want 403", status)
	}

	// The first publication shows that the baseline was taken: what
	// follows is counted in the next ones.
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no admin:stats publication within 10s")
	}
	mu.Lock()
	skip := len(stats)
	mu.Unlock()

	subs := []*client.Client{dialClient(t, m, "u2", "s1", "tablet"), dialClient(t, m, "u2", "s2", "tablet"), dialClient(t, m, "u3", "s3", "tv")}
	for _, c := range subs {
		if _, err := c.Subscribe(t.Context(), "public:feed", func(client.Publication) {}); err != nil {
			t.Fatalf("subscribe public:feed: %v", err)
		}
	}
	const pubs = 20
	for i := range pubs {
		if _, _, err := user.Publish(t.Context(), "public:feed", map[string]int{"i": i}); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"sys.echo": echo})
	const calls = 5
	for range calls {
		if err := user.CallDevice(t.Context(), "mac1", "sys.echo", map[string]int{}, nil); err != nil {
			t.Fatalf("rpc call: %v", err)
		}
	}

	// Summed over the publications after the first, the counts cover
	// everything above.
	var sum protocol.AdminStats
	var last protocol.AdminStats
	sawLatency := false
	deadline := time.After(15 * time.Second)
	for sum.Deliveries < uint64(pubs*len(subs)) || sum.Publications < pubs || sum.RPCCalls < calls || sum.Requests < pubs+calls || !sawLatency {
		select {
		case <-got:
		case <-deadline:
			t.Fatalf("admin:stats after the traffic: summed %+v, want at least %d publications, %d deliveries, %d rpc calls with latency",
				sum, pubs, pubs*len(subs), calls)
		}
		mu.Lock()
		for _, st := range stats[skip:] {
			sum.Publications += st.Publications
			sum.Deliveries += st.Deliveries
			sum.RPCCalls += st.RPCCalls
			sum.Requests += st.Requests
			if st.RPCCalls > 0 && st.RPCLatency.P99Ms > 0 && st.RPCLatency.P99Ms >= st.RPCLatency.P50Ms {
				sawLatency = true
			}
			if st.Deliveries > 0 && (st.DeliveriesPerSec <= 0 || st.IntervalMs <= 0) {
				t.Errorf("stats with %d deliveries: deliveriesPerSec %v over %dms, want a positive rate", st.Deliveries, st.DeliveriesPerSec, st.IntervalMs)
			}
			last = st
		}
		skip = len(stats)
		mu.Unlock()
	}
	if last.NodeID != m.Hub.NodeID() {
		t.Errorf("nodeId: got %q, want %q", last.NodeID, m.Hub.NodeID())
	}
	// console, user, three subscribers, the machine: open until the end.
	wantKinds := map[string]int{"browser": 1, "phone": 1, "tablet": 2, "tv": 1, "machine": 1}
	for k, n := range last.ConnectionsByKind {
		if n != wantKinds[k] {
			t.Errorf("connectionsByKind[%s]: got %d, want %d (all: %v)", k, n, wantKinds[k], last.ConnectionsByKind)
		}
	}
	if last.Connections != 6 || len(last.ConnectionsByKind) != len(auth.Kinds)+2 {
		t.Errorf("connections: got %d by kind %v, want 6, every kind listed", last.Connections, last.ConnectionsByKind)
	}

	// The console can draw the last minute at once from history.
	var h protocol.HistoryResult
	if err := call(t, console, "channel.history", protocol.HistoryParams{Topic: protocol.AdminStatsTopic}, &h); err != nil || len(h.Publications) < 2 {
		t.Errorf("admin:stats history: got %d publications, %v; want the ones published so far", len(h.Publications), err)
	}
}

// TestAdminAccountsAndDevices lists accounts and their devices and
// revokes a device of another account as an admin.
func TestAdminAccountsAndDevices(t *testing.T) {
	m := startServer(t, nil)
	admin := adminTok(t, m)
	alice, bob := newKey(t), newKey(t)
	a1 := login(t, m, alice, "phone")
	a2 := login(t, m, alice, "browser")
	b1 := login(t, m, bob, "machine")
	if a1.AccountID != a2.AccountID || a1.DeviceID == a2.DeviceID {
		t.Fatalf("alice's two logins: %+v and %+v, want one account, two devices", a1, a2)
	}

	var l protocol.AdminAccountList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/accounts", nil, 200, &l)
	if len(l.Items) != 2 || l.Items[0].ID != b1.AccountID || l.Items[1].ID != a1.AccountID || l.NextCursor != "" {
		t.Fatalf("accounts: got %+v, want bob's then alice's (newest first)", l)
	}
	if !bytes.Equal(l.Items[1].PublicKey, alice.Public().(ed25519.PublicKey)) {
		t.Errorf("alice's public key: got %x", l.Items[1].PublicKey)
	}
	l = protocol.AdminAccountList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/accounts?limit=1", nil, 200, &l)
	if len(l.Items) != 1 || l.Items[0].ID != b1.AccountID || l.NextCursor == "" {
		t.Fatalf("accounts page 1: got %+v, want bob's and a cursor", l)
	}
	next := l.NextCursor
	l = protocol.AdminAccountList{}
	apiJSON(t, m, admin, "GET", "/api/v1/admin/accounts?limit=1&cursor="+url.QueryEscape(next), nil, 200, &l)
	if len(l.Items) != 1 || l.Items[0].ID != a1.AccountID || l.NextCursor != "" {
		t.Errorf("accounts page 2: got %+v, want alice's and no cursor", l)
	}
	for _, bad := range []string{"?limit=0", "?limit=101", "?cursor=%21%21"} {
		if status, raw := apiCall(t, m, admin, "GET", "/api/v1/admin/accounts"+bad, nil); status != 400 {
			t.Errorf("accounts%s: status %d body %s, want 400", bad, status, raw)
		}
	}

	var ds protocol.DeviceList
	apiJSON(t, m, admin, "GET", "/api/v1/admin/accounts/"+a1.AccountID+"/devices", nil, 200, &ds)
	if len(ds.Items) != 2 || ds.Items[0].ID != a1.DeviceID || ds.Items[1].ID != a2.DeviceID || ds.Items[0].AccountID != a1.AccountID {
		t.Errorf("alice's devices: got %+v, want %s and %s", ds.Items, a1.DeviceID, a2.DeviceID)
	}
	if status, raw := apiCall(t, m, admin, "GET", "/api/v1/admin/accounts/a-nosuch/devices", nil); status != 404 || decodeAPIError(t, raw).Error.Code != "not_found" {
		t.Errorf("devices of an unknown account: status %d body %s, want 404", status, raw)
	}
	// A user's own token is not an admin's, even for its own account.
	if status, _ := apiCall(t, m, a1.AccessToken, "GET", "/api/v1/admin/accounts/"+a1.AccountID+"/devices", nil); status != 403 {
		t.Errorf("a user lists its devices through the admin API: status %d, want 403", status)
	}

	// Revoke alice's phone while it is connected: closed with 4003, its
	// token refused from then on, her browser told.
	phone := dialToken(t, m, a1.AccessToken)
	browser := dialToken(t, m, a2.AccessToken)
	revoked := make(chan struct{}, 8)
	if _, err := browser.Subscribe(t.Context(), "user:"+a1.AccountID, func(p client.Publication) {
		if strings.Contains(string(p.Data), "device.revoked") {
			revoked <- struct{}{}
		}
	}); err != nil {
		t.Fatalf("subscribe to the user's channel: %v", err)
	}
	if status, _ := apiCall(t, m, admin, "DELETE", "/api/v1/admin/accounts/"+b1.AccountID+"/devices/"+a1.DeviceID, nil); status != 404 {
		t.Errorf("revoke alice's device under bob's account: status %d, want 404", status)
	}
	var d protocol.Device
	apiJSON(t, m, admin, "DELETE", "/api/v1/admin/accounts/"+a1.AccountID+"/devices/"+a1.DeviceID, nil, 200, &d)
	if d.ID != a1.DeviceID || d.RevokedAt.IsZero() {
		t.Errorf("revoked device: got %+v, want %s with revokedAt", d, a1.DeviceID)
	}
	select {
	case <-phone.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked device's connection is still open")
	}
	if got := phone.CloseCode(); got != protocol.CloseForbidden {
		t.Errorf("revoked device's close code: got %d, want %d", got, protocol.CloseForbidden)
	}
	select {
	case <-revoked:
	case <-time.After(10 * time.Second):
		t.Error("alice's browser saw no device.revoked update")
	}
	if status, _ := apiCall(t, m, a1.AccessToken, "GET", "/api/v1/devices", nil); status != 401 {
		t.Errorf("the revoked device's token: status %d, want 401", status)
	}
	// Revoking again changes nothing and answers the revoked device.
	var again protocol.Device
	apiJSON(t, m, admin, "DELETE", "/api/v1/admin/accounts/"+a1.AccountID+"/devices/"+a1.DeviceID, nil, 200, &again)
	if !again.RevokedAt.Equal(d.RevokedAt) || again.Version != d.Version {
		t.Errorf("revoke twice: got %+v, want the first revocation %+v", again, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := browser.Call(ctx, "sys.ping", nil, nil); err != nil {
		t.Errorf("alice's other device after the revocation: %v, want it connected", err)
	}
}
