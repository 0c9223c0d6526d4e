package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/protocol"
)

func TestSessionsREST(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone").AccessToken

	var s protocol.Session
	apiJSON(t, m, tok, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("m1")), "agentState": b64([]byte("a1"))}, 201, &s)
	if s.ID == "" || string(s.Metadata.Value) != "m1" || s.Metadata.Version != 1 || string(s.AgentState.Value) != "a1" || s.AgentState.Version != 1 {
		t.Fatalf("created: got %+v", s)
	}
	var got protocol.Session
	apiJSON(t, m, tok, "GET", "/api/v1/sessions/"+s.ID, nil, 200, &got)
	if got.ID != s.ID || string(got.Metadata.Value) != "m1" {
		t.Fatalf("get: got %+v", got)
	}

	// Update with the expected version, then a stale one: 409 with the
	// current version and value.
	apiJSON(t, m, tok, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", map[string]any{"value": b64([]byte("m2")), "expectedVersion": 1}, 200, &got)
	if got.Metadata.Version != 2 || string(got.Metadata.Value) != "m2" || got.AgentState.Version != 1 {
		t.Fatalf("updated: got %+v", got)
	}
	status, raw := apiCall(t, m, tok, "PUT", "/api/v1/sessions/"+s.ID+"/metadata", map[string]any{"value": b64([]byte("m3")), "expectedVersion": 1})
	e := decodeAPIError(t, raw)
	if status != 409 || e.Error.Code != "conflict" || e.Error.Details["currentVersion"] != float64(2) || e.Error.Details["value"] != b64([]byte("m2")) {
		t.Fatalf("stale update: status %d, body %s; want 409 with currentVersion 2 and the value", status, raw)
	}
	// The other field has its own version.
	apiJSON(t, m, tok, "PUT", "/api/v1/sessions/"+s.ID+"/agent-state", map[string]any{"value": b64([]byte("a2")), "expectedVersion": 1}, 200, &got)
	if got.AgentState.Version != 2 || string(got.AgentState.Value) != "a2" {
		t.Fatalf("agent state: got %+v", got.AgentState)
	}

	// Paging: newest first, with a cursor.
	for i := range 4 {
		apiJSON(t, m, tok, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte(fmt.Sprint(i)))}, 201, nil)
	}
	var seen []string
	cursor := ""
	for range 10 {
		var page protocol.ObjectList[protocol.Session]
		apiJSON(t, m, tok, "GET", "/api/v1/sessions?limit=2&cursor="+cursor, nil, 200, &page)
		for _, it := range page.Items {
			seen = append(seen, it.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 5 || seen[4] != s.ID {
		t.Fatalf("paged sessions: got %v, want 5 ending with the first one %s", seen, s.ID)
	}

	// Another account sees none of it.
	other := login(t, m, newKey(t), "phone").AccessToken
	if status, _ := apiCall(t, m, other, "GET", "/api/v1/sessions/"+s.ID, nil); status != 404 {
		t.Errorf("other account get: status %d, want 404", status)
	}
	if status, _ := apiCall(t, m, other, "DELETE", "/api/v1/sessions/"+s.ID, nil); status != 404 {
		t.Errorf("other account delete: status %d, want 404", status)
	}
	var page protocol.ObjectList[protocol.Session]
	apiJSON(t, m, other, "GET", "/api/v1/sessions", nil, 200, &page)
	if len(page.Items) != 0 {
		t.Errorf("other account list: got %d sessions", len(page.Items))
	}

	apiJSON(t, m, tok, "DELETE", "/api/v1/sessions/"+s.ID, nil, 200, nil)
	if status, _ := apiCall(t, m, tok, "GET", "/api/v1/sessions/"+s.ID, nil); status != 404 {
		t.Errorf("deleted session: status %d, want 404", status)
	}
	// A read-only token cannot write.
	ro := mintToken(t, m, "x", "y", "phone", "read")
	if status, _ := apiCall(t, m, ro, "POST", "/api/v1/sessions", `{}`); status != 403 {
		t.Errorf("read-only create: status %d, want 403", status)
	}
}

func TestMachinesAndArtifactsREST(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "machine").AccessToken

	var mc protocol.Machine
	apiJSON(t, m, tok, "POST", "/api/v1/machines", map[string]string{"metadata": b64([]byte("host")), "daemonState": b64([]byte("idle"))}, 201, &mc)
	apiJSON(t, m, tok, "PUT", "/api/v1/machines/"+mc.ID+"/daemon-state", map[string]any{"value": b64([]byte("busy")), "expectedVersion": 1}, 200, &mc)
	if string(mc.DaemonState.Value) != "busy" || mc.DaemonState.Version != 2 || mc.Metadata.Version != 1 {
		t.Fatalf("machine: got %+v", mc)
	}
	var list protocol.ObjectList[protocol.Machine]
	apiJSON(t, m, tok, "GET", "/api/v1/machines", nil, 200, &list)
	if len(list.Items) != 1 || list.Items[0].ID != mc.ID {
		t.Fatalf("machines: got %+v", list)
	}

	var a protocol.Artifact
	apiJSON(t, m, tok, "POST", "/api/v1/artifacts", map[string]string{"header": b64([]byte("h")), "body": b64([]byte("b"))}, 201, &a)
	apiJSON(t, m, tok, "PUT", "/api/v1/artifacts/"+a.ID+"/body", map[string]any{"value": b64([]byte("b2")), "expectedVersion": 1}, 200, &a)
	apiJSON(t, m, tok, "PUT", "/api/v1/artifacts/"+a.ID+"/header", map[string]any{"value": b64([]byte("h2")), "expectedVersion": 1}, 200, &a)
	if string(a.Header.Value) != "h2" || string(a.Body.Value) != "b2" || a.Header.Version != 2 || a.Body.Version != 2 {
		t.Fatalf("artifact: got %+v", a)
	}
	if status, _ := apiCall(t, m, tok, "PUT", "/api/v1/artifacts/"+a.ID+"/body", map[string]any{"value": b64([]byte("x")), "expectedVersion": 1}); status != 409 {
		t.Fatalf("stale artifact body: status %d, want 409", status)
	}
	apiJSON(t, m, tok, "DELETE", "/api/v1/artifacts/"+a.ID, nil, 200, nil)
	apiJSON(t, m, tok, "DELETE", "/api/v1/machines/"+mc.ID, nil, 200, nil)
	if status, _ := apiCall(t, m, tok, "GET", "/api/v1/artifacts/"+a.ID, nil); status != 404 {
		t.Fatalf("deleted artifact: status %d, want 404", status)
	}
}

func TestMessagesREST(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone").AccessToken
	var s protocol.Session
	apiJSON(t, m, tok, "POST", "/api/v1/sessions", nil, 201, &s)
	path := "/api/v1/sessions/" + s.ID + "/messages"

	batch := make([]map[string]string, 100)
	for i := range batch {
		batch[i] = map[string]string{"localId": fmt.Sprint("l", i), "body": b64([]byte(fmt.Sprint("msg ", i)))}
	}
	var res protocol.MessageList
	apiJSON(t, m, tok, "POST", path, map[string]any{"messages": batch}, 201, &res)
	if len(res.Items) != 100 || res.Items[0].Seq != 1 || res.Items[99].Seq != 100 {
		t.Fatalf("batch of 100: got %d items, seqs %d..%d", len(res.Items), res.Items[0].Seq, res.Items[len(res.Items)-1].Seq)
	}
	// A repeated local id returns the stored message and adds nothing.
	apiJSON(t, m, tok, "POST", path, map[string]any{"messages": []map[string]string{
		{"localId": "l5", "body": b64([]byte("again"))}, {"body": b64([]byte("new"))},
	}}, 201, &res)
	if res.Items[0].Seq != 6 || string(res.Items[0].Body) != "msg 5" || res.Items[1].Seq != 101 {
		t.Fatalf("dedupe: got %+v", res.Items)
	}
	// Too large a batch is refused whole.
	big := make([]map[string]string, 101)
	for i := range big {
		big[i] = map[string]string{"body": ""}
	}
	if status, raw := apiCall(t, m, tok, "POST", path, map[string]any{"messages": big}); status != 400 || decodeAPIError(t, raw).Error.Details["field"] != "messages" {
		t.Fatalf("batch of 101: status %d, %s; want 400 naming messages", status, raw)
	}

	var page protocol.MessageList
	apiJSON(t, m, tok, "GET", path+"?after_seq=95&limit=3", nil, 200, &page)
	if len(page.Items) != 3 || page.Items[0].Seq != 96 || page.Items[2].Seq != 98 {
		t.Fatalf("after_seq: got %+v", seqs(page.Items))
	}
	apiJSON(t, m, tok, "GET", path+"?before_seq=10&limit=3", nil, 200, &page)
	if got := seqs(page.Items); fmt.Sprint(got) != "[9 8 7]" {
		t.Fatalf("before_seq: got %v, want [9 8 7]", got)
	}
	if status, _ := apiCall(t, m, tok, "GET", "/api/v1/sessions/nope/messages", nil); status != 404 {
		t.Fatalf("messages of an unknown session: status %d, want 404", status)
	}
}

func seqs(ms []protocol.Message) []int64 {
	out := make([]int64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

// updateCollector gathers the updates published on an account's channel.
type updateCollector struct {
	mu  sync.Mutex
	ups []protocol.Update
}

func (u *updateCollector) add(p client.Publication) {
	var pub protocol.UpdatePublication
	if json.Unmarshal(p.Data, &pub) == nil {
		u.mu.Lock()
		u.ups = append(u.ups, pub.Update)
		u.mu.Unlock()
	}
}

func (u *updateCollector) kinds() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for _, up := range u.ups {
		out = append(out, up.Kind)
	}
	return out
}

func TestDataWebSocketAndUpdates(t *testing.T) {
	m := startServer(t, nil)
	phone := login(t, m, newKey(t), "phone")

	// A second device of the account follows the updates live.
	var code protocol.PairingCode
	apiJSON(t, m, phone.AccessToken, "POST", "/api/v1/devices/pairing", nil, 201, &code)
	var laptop protocol.Tokens
	apiJSON(t, m, "", "POST", "/api/v1/devices/pair", map[string]any{"code": code.Code, "device": map[string]string{"kind": "browser"}}, 200, &laptop)
	watcher := dialToken(t, m, laptop.AccessToken)
	var live updateCollector
	ctx := context.Background()
	if _, err := watcher.Subscribe(ctx, "user:"+phone.AccountID, live.add); err != nil {
		t.Fatalf("subscribe to the account channel: %v", err)
	}
	var since protocol.Updates
	apiJSON(t, m, laptop.AccessToken, "GET", "/api/v1/updates?since=0", nil, 200, &since)
	start := since.Updates[len(since.Updates)-1].Seq // device.created of the laptop

	c := dialToken(t, m, phone.AccessToken)
	var s protocol.Session
	if err := call(t, c, "session.create", map[string]string{"metadata": b64([]byte("meta"))}, &s); err != nil {
		t.Fatal(err)
	}
	if err := call(t, c, "session.update", map[string]any{"id": s.ID, "field": "agentState", "value": b64([]byte("st")), "expectedVersion": 1}, &s); err != nil {
		t.Fatal(err)
	}
	err := call(t, c, "session.update", map[string]any{"id": s.ID, "field": "agentState", "value": b64([]byte("x")), "expectedVersion": 1}, nil)
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != protocol.CodeConflict || pe.Details["currentVersion"] != float64(2) {
		t.Fatalf("stale update over ws: got %v (%+v), want conflict with currentVersion 2", err, pe)
	}
	var msgs protocol.MessageList
	if err := call(t, c, "message.append", map[string]any{"sessionId": s.ID, "messages": []map[string]string{{"localId": "a", "body": b64([]byte("hi"))}, {"body": b64([]byte("there"))}}}, &msgs); err != nil {
		t.Fatal(err)
	}
	if len(msgs.Items) != 2 || msgs.Items[1].Seq != 2 {
		t.Fatalf("append over ws: got %+v", msgs)
	}
	if err := call(t, c, "message.list", map[string]any{"sessionId": s.ID, "afterSeq": 1}, &msgs); err != nil || len(msgs.Items) != 1 || string(msgs.Items[0].Body) != "there" {
		t.Fatalf("message.list: got %+v, %v", msgs, err)
	}
	var mc protocol.Machine
	if err := call(t, c, "machine.create", map[string]string{"metadata": b64([]byte("m"))}, &mc); err != nil {
		t.Fatal(err)
	}
	var a protocol.Artifact
	if err := call(t, c, "artifact.create", map[string]string{"header": b64([]byte("h"))}, &a); err != nil {
		t.Fatal(err)
	}
	if err := call(t, c, "artifact.delete", map[string]string{"id": a.ID}, nil); err != nil {
		t.Fatal(err)
	}
	var list protocol.ObjectList[protocol.Session]
	if err := call(t, c, "session.list", map[string]any{"limit": 10}, &list); err != nil || len(list.Items) != 1 {
		t.Fatalf("session.list: got %+v, %v", list, err)
	}
	if err := call(t, c, "session.get", map[string]string{"id": "missing"}, nil); !errors.As(err, &pe) || pe.Code != protocol.CodeNotFound {
		t.Fatalf("session.get of a missing id: got %v, want not_found", err)
	}
	if err := call(t, c, "session.update", map[string]any{"id": s.ID, "field": "daemonState", "value": "", "expectedVersion": 1}, nil); !errors.As(err, &pe) || pe.Details["field"] != "field" {
		t.Fatalf("update of a field sessions lack: got %v, want bad_request naming field", err)
	}

	want := []string{"session.created", "session.updated", "message.created", "message.created", "machine.created", "artifact.created", "artifact.deleted"}
	eventually(t, "the live updates", func() bool { return len(live.kinds()) >= len(want) })
	if got := live.kinds(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("live updates: got %v, want %v", got, want)
	}

	// update.since returns exactly what was missed, in order, and the same
	// updates as the live ones.
	var missed protocol.Updates
	if err := call(t, watcher, "update.since", map[string]any{"since": start}, &missed); err != nil {
		t.Fatal(err)
	}
	if missed.Reset || len(missed.Updates) != len(want) {
		t.Fatalf("update.since: got %+v", missed)
	}
	live.mu.Lock()
	for i, u := range missed.Updates {
		if u.Seq != start+int64(i)+1 || u.Kind != want[i] || u.Seq != live.ups[i].Seq || !bytes.Equal(u.Body, live.ups[i].Body) {
			t.Errorf("update %d: got seq %d kind %s, live seq %d; want seq %d kind %s", i, u.Seq, u.Kind, live.ups[i].Seq, start+int64(i)+1, want[i])
		}
	}
	live.mu.Unlock()
	apiJSON(t, m, laptop.AccessToken, "GET", fmt.Sprint("/api/v1/updates?since=", start+3, "&limit=2"), nil, 200, &missed)
	if len(missed.Updates) != 2 || missed.Updates[0].Seq != start+4 || !missed.HasMore {
		t.Fatalf("updates page: got %+v", missed)
	}
	// Ahead of the account: reset with the current seq.
	apiJSON(t, m, laptop.AccessToken, "GET", "/api/v1/updates?since=100000", nil, 200, &missed)
	if !missed.Reset || missed.Seq != start+int64(len(want)) || len(missed.Updates) != 0 {
		t.Fatalf("since ahead: got %+v, want reset at seq %d", missed, start+int64(len(want)))
	}
}

func TestUpdatesBeyondRetention(t *testing.T) {
	m := startServer(t, nil, func(m *Main) { m.StoreOptions.UpdateRetention = 16 })
	tok := login(t, m, newKey(t), "phone").AccessToken
	var s protocol.Session
	apiJSON(t, m, tok, "POST", "/api/v1/sessions", nil, 201, &s)
	for i := range 40 {
		apiJSON(t, m, tok, "POST", "/api/v1/sessions/"+s.ID+"/messages", map[string]any{"messages": []map[string]string{{"body": b64([]byte(fmt.Sprint(i)))}}}, 201, nil)
	}
	var res protocol.Updates
	apiJSON(t, m, tok, "GET", "/api/v1/updates?since=1", nil, 200, &res)
	if !res.Reset || len(res.Updates) != 0 || res.Seq != 42 {
		t.Fatalf("since 1 beyond retention: got %+v, want reset at seq 42", res)
	}
	apiJSON(t, m, tok, "GET", "/api/v1/updates?since=30", nil, 200, &res)
	if res.Reset || len(res.Updates) != 12 || res.Updates[0].Seq != 31 {
		t.Fatalf("since 30 within retention: got reset %v, %d updates", res.Reset, len(res.Updates))
	}
}

func TestIdempotencySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	m := startServer(t, func(c *Config) { c.Data = dir })
	tok := login(t, m, newKey(t), "phone")

	var first protocol.Session
	apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("once"))}, 201, &first, "Idempotency-Key", "k1")
	var again protocol.Session
	apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("once"))}, 201, &again, "Idempotency-Key", "k1")
	if again.ID != first.ID {
		t.Fatalf("repeat before restart: got %s, want %s", again.ID, first.ID)
	}
	// Same key, another request: refused.
	if status, _ := apiCall(t, m, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("other"))}, "Idempotency-Key", "k1"); status != 409 {
		t.Fatalf("key reused with another body: status %d, want 409", status)
	}
	// A failure is remembered too (not retryable): conflict stays conflict.
	var msgs protocol.MessageList
	apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions/"+first.ID+"/messages", map[string]any{"messages": []map[string]string{{"body": b64([]byte("m"))}}}, 201, &msgs, "Idempotency-Key", "k2")
	c := dialToken(t, m, tok.AccessToken)
	var wsRes protocol.MessageList
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.CallIdem(ctx, "message.append", map[string]any{"sessionId": first.ID, "messages": []map[string]string{{"body": b64([]byte("w"))}}}, "k3", &wsRes); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// Restart on the same data directory.
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2 := startServer(t, func(c *Config) { c.Data = dir })
	apiJSON(t, m2, tok.AccessToken, "POST", "/api/v1/sessions", map[string]string{"metadata": b64([]byte("once"))}, 201, &again, "Idempotency-Key", "k1")
	if again.ID != first.ID {
		t.Fatalf("repeat after restart: got %s, want %s", again.ID, first.ID)
	}
	var msgs2 protocol.MessageList
	apiJSON(t, m2, tok.AccessToken, "POST", "/api/v1/sessions/"+first.ID+"/messages", map[string]any{"messages": []map[string]string{{"body": b64([]byte("m"))}}}, 201, &msgs2, "Idempotency-Key", "k2")
	if msgs2.Items[0].ID != msgs.Items[0].ID {
		t.Fatalf("message repeat after restart: got %s, want %s", msgs2.Items[0].ID, msgs.Items[0].ID)
	}
	c2 := dialToken(t, m2, tok.AccessToken)
	var wsRes2 protocol.MessageList
	if err := c2.CallIdem(ctx, "message.append", map[string]any{"sessionId": first.ID, "messages": []map[string]string{{"body": b64([]byte("w"))}}}, "k3", &wsRes2); err != nil {
		t.Fatal(err)
	}
	if wsRes2.Items[0].ID != wsRes.Items[0].ID {
		t.Fatalf("ws repeat after restart: got %s, want %s", wsRes2.Items[0].ID, wsRes.Items[0].ID)
	}
	var list protocol.ObjectList[protocol.Session]
	apiJSON(t, m2, tok.AccessToken, "GET", "/api/v1/sessions", nil, 200, &list)
	var page protocol.MessageList
	apiJSON(t, m2, tok.AccessToken, "GET", "/api/v1/sessions/"+first.ID+"/messages", nil, 200, &page)
	if len(list.Items) != 1 || len(page.Items) != 2 {
		t.Fatalf("after repeats: %d sessions and %d messages, want 1 and 2", len(list.Items), len(page.Items))
	}
}

func TestDatabaseHoldsOnlyCiphertext(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone").AccessToken
	key, err := client.NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{}
	seal := func(name string) string {
		plain := []byte("PLAINTEXT-" + name + "-7f3a9c")
		secrets[name] = plain
		sealed, err := client.Seal(key, plain)
		if err != nil {
			t.Fatal(err)
		}
		return b64(sealed)
	}
	var s protocol.Session
	apiJSON(t, m, tok, "POST", "/api/v1/sessions", map[string]string{"metadata": seal("session-metadata"), "agentState": seal("agent-state")}, 201, &s)
	apiJSON(t, m, tok, "POST", "/api/v1/sessions/"+s.ID+"/messages", map[string]any{"messages": []map[string]string{{"body": seal("message")}}}, 201, nil)
	apiJSON(t, m, tok, "POST", "/api/v1/machines", map[string]string{"metadata": seal("machine"), "daemonState": seal("daemon")}, 201, nil)
	apiJSON(t, m, tok, "POST", "/api/v1/artifacts", map[string]string{"header": seal("header"), "body": seal("body")}, 201, nil)
	// The server returns the ciphertext, and it opens on the client.
	var got protocol.Session
	apiJSON(t, m, tok, "GET", "/api/v1/sessions/"+s.ID, nil, 200, &got)
	if plain, err := client.Open(key, got.Metadata.Value); err != nil || !bytes.Equal(plain, secrets["session-metadata"]) {
		t.Fatalf("round trip: got %q, %v", plain, err)
	}

	// Every byte the database wrote (main file and WAL) is free of the
	// plaintexts; a value stored in clear (the device name) is found, which
	// shows the scan sees the data.
	raw := readDatabaseFiles(t, m.Config.Data)
	if !bytes.Contains(raw, []byte("test phone")) {
		t.Fatal("the device name is not in the database files: the scan is blind")
	}
	for name, plain := range secrets {
		if bytes.Contains(raw, plain) {
			t.Errorf("the database holds the plaintext of %s", name)
		}
	}
}

func readDatabaseFiles(t *testing.T, dir string) []byte {
	t.Helper()
	var all []byte
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(filepath.Join(dir, "junction.db"+suffix))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}
