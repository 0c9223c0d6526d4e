package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Issue 13, item 8, end to end: a user's settings of an app (validated
// against the app's schema, versioned, pushed over the app's socket or by
// signed webhook) and tools (tool.call validated against the tool's
// schema, over the app's socket or by webhook, scoped, rate limited).

// toolBackend is an app's server that verifies every webhook and answers
// tool.call webhooks with a JSON result.
type toolBackend struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret []webhook.Secret
	hooks  chan map[string]any
}

func newToolBackend(t *testing.T) *toolBackend {
	b := &toolBackend{t: t, hooks: make(chan map[string]any, 64)}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		v := &webhook.Verifier{Secrets: b.secret}
		b.mu.Unlock()
		body, _, err := v.VerifyRequest(r, 1<<20)
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var hook map[string]any
		if err := json.Unmarshal(body, &hook); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		b.hooks <- hook
		if hook["type"] == "tool.call" {
			args, _ := hook["args"].(map[string]any)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"translated": args["text"], "via": "webhook", "user": hook["userId"]})
		}
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// next waits for the next webhook of type typ.
func (b *toolBackend) next(typ string) map[string]any {
	b.t.Helper()
	select {
	case h := <-b.hooks:
		if h["type"] != typ {
			b.t.Fatalf("webhook %v, want %s", h, typ)
		}
		return h
	case <-time.After(10 * time.Second):
		b.t.Fatalf("no %s webhook", typ)
	}
	return nil
}

var langSchema = map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{
	"lang": map[string]any{"type": "string", "enum": []string{"en", "fr", "de"}},
	"size": map[string]any{"type": "integer", "minimum": 1}}}

var translateTool = map[string]any{"name": "translate", "description": "translate a text", "params": map[string]any{
	"type": "object", "required": []string{"text"}, "properties": map[string]any{"text": map[string]any{"type": "string"}, "to": map[string]any{"type": "string"}}}}

// registerToolApp registers com.example.tr with the settings schema and
// the translate tool, its webhooks going to b, installed by u1.
func registerToolApp(t *testing.T, m *Main, b *toolBackend) string {
	t.Helper()
	created := createApp(t, m, map[string]any{"id": "com.example.tr", "name": "Translator", "kind": "foreground", "scopes": []string{"read", "write"},
		"webhookUrl": b.srv.URL + "/hooks", "internal": true, "settingsSchema": langSchema, "tools": []any{translateTool}})
	sec, err := webhook.ParseSecret(created.WebhookSecret.Secret)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.secret = []webhook.Secret{sec}
	b.mu.Unlock()
	apiJSON(t, m, mintToken(t, m, "u1", "u1-phone", "phone"), "PUT", "/api/v1/apps/com.example.tr/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	return created.Key.Key
}

// startToolSession starts the app on u1's glasses and connects it.
func startToolSession(t *testing.T, m *Main, b *toolBackend, key string) (*device, *appConn, string) {
	t.Helper()
	dev := dialDevice(t, m, "u1", "u1-glasses")
	st := dev.start(t, "com.example.tr")
	hook := b.next("session.start")
	app := connectApp(t, m, key, hook)
	dev.wait(t, st.Session.ID, protocol.AppStateRunning)
	return dev, app, st.Session.ID
}

// TestAppSettingsFlow: values are validated against the app's schema (the
// pointer names the bad value), versioned by compare-and-set (a stale
// version answers conflict with the current one), sent by webhook while
// no session socket is up and pushed as settings.changed when one is;
// apps.hello and apps.settings carry them; an app cannot write them.
func TestAppSettingsFlow(t *testing.T) {
	m, _, _ := appsServerWith(t, func(c *Config) { c.Apps.WebhookRetryBase = 5 * time.Millisecond })
	b := newToolBackend(t)
	key := registerToolApp(t, m, b)
	user := mintToken(t, m, "u1", "u1-phone", "phone")

	var got protocol.AppSettings
	apiJSON(t, m, user, "GET", "/api/v1/apps/com.example.tr/settings", nil, 200, &got)
	if got.Version != 0 || got.Values != nil || len(got.Schema) == 0 {
		t.Fatalf("settings before any write %+v", got)
	}
	// Invalid values: the pointer names the offending member.
	for _, c := range []struct {
		values  any
		pointer string
	}{{map[string]any{"lang": "xx"}, "/lang"}, {map[string]any{"size": 0}, "/size"}, {map[string]any{"colour": "red"}, ""}} {
		code, raw := apiCall(t, m, user, "PUT", "/api/v1/apps/com.example.tr/settings", map[string]any{"values": c.values, "version": 0})
		e := decodeAPIError(t, raw)
		if code != 400 || e.Error.Code != "bad_request" || e.Error.Details["reason"] != protocol.ReasonInvalidParams || e.Error.Details["pointer"] != c.pointer {
			t.Fatalf("values %v: %d %s, want 400 invalid_params at %q", c.values, code, raw, c.pointer)
		}
	}
	// No session: the webhook carries the new values.
	apiJSON(t, m, user, "PUT", "/api/v1/apps/com.example.tr/settings", map[string]any{"values": map[string]any{"lang": "fr"}, "version": 0}, 200, &got)
	if got.Version != 1 || string(got.Values) != `{"lang":"fr"}` {
		t.Fatalf("first write %+v", got)
	}
	h := b.next("settings.changed")
	if h["version"] != 1.0 || h["values"].(map[string]any)["lang"] != "fr" || h["userId"] == "" || h["userId"] == "u1" || h["appId"] != "com.example.tr" {
		t.Fatalf("settings.changed webhook %v", h)
	}
	// A stale version is a conflict naming the current one.
	code, raw := apiCall(t, m, user, "PUT", "/api/v1/apps/com.example.tr/settings", map[string]any{"values": map[string]any{"lang": "de"}, "version": 0})
	if e := decodeAPIError(t, raw); code != 409 || e.Error.Code != "conflict" || e.Error.Details["version"] != 1.0 {
		t.Fatalf("stale write: %d %s, want 409 at version 1", code, raw)
	}

	dev, app, sid := startToolSession(t, m, b, key)
	var hello protocol.AppHello
	if err := app.c.Call(context.Background(), "apps.hello", protocol.AppSessionRef{AppID: "com.example.tr", SessionID: sid}, &hello); err != nil {
		t.Fatal(err)
	}
	if hello.Settings.Version != 1 || string(hello.Settings.Values) != `{"lang":"fr"}` {
		t.Fatalf("hello settings %+v", hello.Settings)
	}
	changed := make(chan protocol.AppSettingsChanged, 4)
	app.c.OnEvent(protocol.EventSettingsChanged, func(f *protocol.Frame) {
		var c protocol.AppSettingsChanged
		_ = json.Unmarshal(f.Data, &c)
		changed <- c
	})
	// Written over the device's socket: pushed to the app's socket.
	if err := dev.c.Call(context.Background(), "apps.setSettings", protocol.AppSettingsPutParams{AppID: "com.example.tr",
		Values: json.RawMessage(`{"lang":"de","size":3}`), Version: 1}, &got); err != nil || got.Version != 2 {
		t.Fatalf("setSettings over WS: %+v %v", got, err)
	}
	select {
	case c := <-changed:
		if c.Version != 2 || c.SessionID != sid || c.AppID != "com.example.tr" || string(c.Values) != `{"lang":"de","size":3}` {
			t.Fatalf("settings.changed %+v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no settings.changed on the app's socket")
	}
	// The app reads them for its user, but may not write them.
	if err := app.c.Call(context.Background(), "apps.settings", protocol.AppSettingsParams{AppID: "com.example.tr"}, &got); err != nil || got.Version != 2 {
		t.Fatalf("apps.settings from the app: %+v %v", got, err)
	}
	var pe *protocol.Error
	err := app.c.Call(context.Background(), "apps.setSettings", protocol.AppSettingsPutParams{AppID: "com.example.tr", Values: json.RawMessage(`{}`), Version: 2}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeForbidden {
		t.Fatalf("the app writing settings: %v, want forbidden", err)
	}
	// The push went over the socket only: the next webhook is session.stop.
	if err := dev.c.Call(context.Background(), "apps.stopSession", protocol.AppSessionRef{AppID: "com.example.tr", SessionID: sid}, nil); err != nil {
		t.Fatal(err)
	}
	b.next("session.stop")
	// Uninstalling forgets them.
	apiJSON(t, m, user, "DELETE", "/api/v1/apps/com.example.tr/install", nil, 200, nil)
	apiJSON(t, m, user, "PUT", "/api/v1/apps/com.example.tr/install", map[string]any{"scopes": []string{"read"}}, 200, nil)
	var fresh protocol.AppSettings
	apiJSON(t, m, user, "GET", "/api/v1/apps/com.example.tr/settings", nil, 200, &fresh)
	if fresh.Version != 0 || fresh.Values != nil {
		t.Fatalf("settings after a reinstall %+v, want none", fresh)
	}
}

// TestAppToolCall: tool.call needs the tools scope and an installation;
// schema-invalid args answer invalid_params with the pointer; with no
// session socket the call goes by webhook (its body is the result), with
// one over the socket (tool.invoke, the app's answer or error is the
// caller's); an app that does not answer in time is a timeout; calls to
// one app are rate limited.
func TestAppToolCall(t *testing.T) {
	m, _, _ := appsServerWith(t, func(c *Config) {
		c.Apps.WebhookRetryBase = 5 * time.Millisecond
		c.Apps.ToolTimeout = time.Second
		c.Apps.ToolRate = 0.01
		c.Apps.ToolBurst = 4
	})
	b := newToolBackend(t)
	key := registerToolApp(t, m, b)
	caller := mintToken(t, m, "u1", "u1-phone", "phone", "read", "write", protocol.ScopeTools)
	call := func(token, tool string, args any) (int, []byte) {
		return apiCall(t, m, token, "POST", "/api/v1/apps/com.example.tr/tools/"+tool+"/call", map[string]any{"args": args})
	}

	// Refusals that spend nothing of the rate limit.
	if code, raw := call(mintToken(t, m, "u1", "u1-phone", "phone"), "translate", map[string]any{"text": "hi"}); code != 403 {
		t.Fatalf("without the tools scope: %d %s, want 403", code, raw)
	}
	if code, raw := call(mintToken(t, m, "u2", "u2-phone", "phone", "read", protocol.ScopeTools), "translate", map[string]any{"text": "hi"}); code != 403 ||
		decodeAPIError(t, raw).Error.Details["reason"] != "not_installed" {
		t.Fatalf("a user without the app: %d %s, want 403 not_installed", code, raw)
	}
	if code, raw := call(caller, "summarize", map[string]any{}); code != 404 {
		t.Fatalf("unknown tool: %d %s, want 404", code, raw)
	}
	for _, c := range []struct {
		args    any
		pointer string
	}{{map[string]any{"text": 5}, "/text"}, {map[string]any{"to": "fr"}, ""}} {
		code, raw := call(caller, "translate", c.args)
		e := decodeAPIError(t, raw)
		if code != 400 || e.Error.Details["reason"] != protocol.ReasonInvalidParams || e.Error.Details["pointer"] != c.pointer || e.Error.Details["field"] != "args" {
			t.Fatalf("args %v: %d %s, want 400 invalid_params at %q", c.args, code, raw, c.pointer)
		}
	}

	// 1. No session: by webhook, the response body is the result.
	var res protocol.ToolCallResult
	apiJSON(t, m, caller, "POST", "/api/v1/apps/com.example.tr/tools/translate/call", map[string]any{"args": map[string]any{"text": "hello"}}, 200, &res)
	h := b.next("tool.call")
	if res.Via != "webhook" || h["tool"] != "translate" || h["callId"] == "" || h["userId"] == "u1" {
		t.Fatalf("webhook call: %+v, hook %v", res, h)
	}
	var out map[string]any
	if err := json.Unmarshal(res.Result, &out); err != nil || out["translated"] != "hello" || out["user"] != h["userId"] {
		t.Fatalf("webhook result %s", res.Result)
	}

	// 2. Over the session's socket.
	_, app, sid := startToolSession(t, m, b, key)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	app.c.Handle(protocol.MethodToolInvoke, func(ctx context.Context, req *protocol.Frame) (any, error) {
		var inv protocol.ToolInvoke
		if err := json.Unmarshal(req.Params, &inv); err != nil {
			return nil, err
		}
		var args map[string]any
		_ = json.Unmarshal(inv.Args, &args)
		switch args["text"] {
		case "fail":
			return nil, protocol.Errorf(protocol.CodeConflict, "the translator is busy")
		case "hang":
			select {
			case <-ctx.Done():
			case <-release:
			}
			return nil, errors.New("gave up")
		}
		if inv.SessionID != sid || inv.AppID != "com.example.tr" {
			return nil, protocol.Errorf(protocol.CodeBadRequest, "wrong session %q", inv.SessionID)
		}
		return map[string]any{"translated": args["text"], "via": "socket"}, nil
	})
	phone := dialClient(t, m, "u1", "u1-phone", "phone", "read", protocol.ScopeTools)
	if err := phone.Call(context.Background(), "tool.call", protocol.ToolCallParams{AppID: "com.example.tr", Tool: "translate", Args: json.RawMessage(`{"text":"bonjour"}`)}, &res); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(res.Result, &out); err != nil || res.Via != "socket" || out["translated"] != "bonjour" {
		t.Fatalf("socket call %+v", res)
	}
	// 3. The app's error is the caller's.
	var pe *protocol.Error
	err := phone.Call(context.Background(), "tool.call", protocol.ToolCallParams{AppID: "com.example.tr", Tool: "translate", Args: json.RawMessage(`{"text":"fail"}`)}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeConflict || pe.Details["via"] != "socket" {
		t.Fatalf("failing tool: %v, want the app's conflict", err)
	}
	// 4. No answer within the timeout.
	err = phone.Call(context.Background(), "tool.call", protocol.ToolCallParams{AppID: "com.example.tr", Tool: "translate", Args: json.RawMessage(`{"text":"hang"}`)}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeTimeout {
		t.Fatalf("hanging tool: %v, want timeout", err)
	}
	// 5. The burst is spent: rate limited, with a retry-after.
	err = phone.Call(context.Background(), "tool.call", protocol.ToolCallParams{AppID: "com.example.tr", Tool: "translate", Args: json.RawMessage(`{"text":"again"}`)}, nil)
	if !errors.As(err, &pe) || pe.Code != protocol.CodeRateLimited || pe.Details["retryAfterMs"] == nil {
		t.Fatalf("fifth call: %v, want rate_limited", err)
	}
}
