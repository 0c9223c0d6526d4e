package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

func TestDataBadInput(t *testing.T) {
	m := startServer(t, nil, func(m *Main) { m.StoreOptions.MaxValueBytes = 1024 })
	tok := login(t, m, newKey(t), "phone")
	var s protocol.Session
	apiJSON(t, m, tok.AccessToken, "POST", "/api/v1/sessions", nil, 201, &s)
	sp := "/api/v1/sessions/" + s.ID

	okB64 := b64([]byte("x"))
	tests := []struct {
		name         string
		token        string // "" uses tok; "-" sends none
		method, path string
		body         string
		wantStatus   int
		wantCode     string
		wantField    string
	}{
		{"no credential", "-", "GET", "/api/v1/sessions", "", 401, "unauthorized", ""},
		{"bad credential", "garbage", "GET", "/api/v1/sessions", "", 401, "unauthorized", ""},
		{"unknown route", "", "GET", "/api/v1/nothing", "", 404, "not_found", ""},
		{"unknown session", "", "GET", "/api/v1/sessions/nope", "", 404, "not_found", ""},
		{"metadata wrong type", "", "POST", "/api/v1/sessions", `{"metadata":5}`, 400, "bad_request", "metadata"},
		{"metadata not base64", "", "POST", "/api/v1/sessions", `{"metadata":"%%%"}`, 400, "bad_request", "metadata"},
		{"unknown field", "", "POST", "/api/v1/sessions", `{"metadata":"","owner":"me"}`, 400, "bad_request", "owner"},
		{"trailing data", "", "POST", "/api/v1/sessions", `{} {}`, 400, "bad_request", ""},
		{"syntax error", "", "POST", "/api/v1/sessions", `{"metadata":`, 400, "bad_request", ""},
		{"array body", "", "POST", "/api/v1/sessions", `[]`, 400, "bad_request", "params"},
		{"deeply nested", "", "POST", "/api/v1/sessions", `{"metadata":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`, 400, "bad_request", ""},
		{"huge body", "", "POST", "/api/v1/sessions", `{"metadata":"` + strings.Repeat("A", 2<<20) + `"}`, 413, "too_large", ""},
		{"value over the store limit", "", "POST", "/api/v1/sessions", `{"metadata":"` + b64(make([]byte, 2048)) + `"}`, 413, "too_large", ""},
		{"update without expectedVersion", "", "PUT", sp + "/metadata", `{"value":"` + okB64 + `"}`, 400, "bad_request", "expectedVersion"},
		{"expectedVersion wrong type", "", "PUT", sp + "/metadata", `{"value":"","expectedVersion":"1"}`, 400, "bad_request", "expectedVersion"},
		{"expectedVersion zero", "", "PUT", sp + "/metadata", `{"value":"","expectedVersion":0}`, 400, "bad_request", "expectedVersion"},
		{"update value not base64", "", "PUT", sp + "/metadata", `{"value":"!","expectedVersion":1}`, 400, "bad_request", "value"},
		{"update field for another route", "", "PUT", sp + "/metadata", `{"field":"agentState","value":"","expectedVersion":1}`, 400, "bad_request", "field"},
		{"update empty body", "", "PUT", sp + "/metadata", ``, 400, "bad_request", ""},
		{"messages wrong type", "", "POST", sp + "/messages", `{"messages":{}}`, 400, "bad_request", "messages"},
		{"messages empty", "", "POST", sp + "/messages", `{"messages":[]}`, 400, "bad_request", "messages"},
		{"message body not base64", "", "POST", sp + "/messages", `{"messages":[{"body":"` + okB64 + `"},{"body":"?"}]}`, 400, "bad_request", "messages[1].body"},
		{"message over the store limit", "", "POST", sp + "/messages", `{"messages":[{"body":"` + okB64 + `"},{"body":"` + b64(make([]byte, 2048)) + `"}]}`, 413, "too_large", ""},
		{"limit not a number", "", "GET", "/api/v1/sessions?limit=ten", "", 400, "bad_request", "limit"},
		{"limit too big", "", "GET", "/api/v1/sessions?limit=1000", "", 400, "bad_request", "limit"},
		{"bad cursor", "", "GET", "/api/v1/sessions?cursor=zzz", "", 400, "bad_request", "cursor"},
		{"negative after_seq", "", "GET", sp + "/messages?after_seq=-1", "", 400, "bad_request", "after_seq"},
		{"updates without since", "", "GET", "/api/v1/updates", "", 400, "bad_request", "since"},
		{"updates limit too big", "", "GET", "/api/v1/updates?since=0&limit=5000", "", 400, "bad_request", "limit"},
		{"rename without fields", "", "PATCH", "/api/v1/devices/" + tok.DeviceID, `{}`, 400, "bad_request", "name"},
		{"idempotency key too long", "", "POST", "/api/v1/sessions", `{}`, 400, "bad_request", "idempotencyKey"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := tok.AccessToken
			switch tc.token {
			case "-":
				token = ""
			case "":
			default:
				token = tc.token
			}
			var body any
			if tc.body != "" {
				body = tc.body
			}
			var headers []string
			if tc.name == "idempotency key too long" {
				headers = []string{"Idempotency-Key", strings.Repeat("k", 300)}
			}
			status, raw := apiCall(t, m, token, tc.method, tc.path, body, headers...)
			if status != tc.wantStatus {
				t.Fatalf("status: got %d, want %d; body %.300s", status, tc.wantStatus, raw)
			}
			e := decodeAPIError(t, raw)
			if e.Error.Code != tc.wantCode {
				t.Errorf("code: got %q, want %q", e.Error.Code, tc.wantCode)
			}
			if tc.wantField != "" && e.Error.Details["field"] != tc.wantField {
				t.Errorf("field: got %v, want %q (message %q)", e.Error.Details["field"], tc.wantField, e.Error.Message)
			}
			for _, leak := range []string{"store:", "sql", "sqlite", "SELECT", "goroutine"} {
				if strings.Contains(e.Error.Message, leak) {
					t.Errorf("message leaks %q: %q", leak, e.Error.Message)
				}
			}
		})
	}

	// None of the refused writes changed anything: no message, no update
	// beyond the session's creation, versions untouched.
	var page protocol.MessageList
	apiJSON(t, m, tok.AccessToken, "GET", sp+"/messages", nil, 200, &page)
	var got protocol.Session
	apiJSON(t, m, tok.AccessToken, "GET", sp, nil, 200, &got)
	var ups protocol.Updates
	apiJSON(t, m, tok.AccessToken, "GET", "/api/v1/updates?since=0", nil, 200, &ups)
	var list protocol.ObjectList[protocol.Session]
	apiJSON(t, m, tok.AccessToken, "GET", "/api/v1/sessions", nil, 200, &list)
	if len(page.Items) != 0 || got.LastSeq != 0 || got.Metadata.Version != 1 || len(list.Items) != 1 || len(ups.Updates) != 2 {
		t.Fatalf("after refused writes: %d messages, lastSeq %d, metadata v%d, %d sessions, %d updates; want 0, 0, v1, 1, 2 (device and session created)",
			len(page.Items), got.LastSeq, got.Metadata.Version, len(list.Items), len(ups.Updates))
	}
	// The server is still fine.
	apiJSON(t, m, tok.AccessToken, "POST", sp+"/messages", fmt.Sprintf(`{"messages":[{"body":%q}]}`, okB64), 201, nil)
}

func TestDataBadInputWebSocket(t *testing.T) {
	m := startServer(t, nil)
	tok := login(t, m, newKey(t), "phone")
	c := dialToken(t, m, tok.AccessToken)
	tests := []struct {
		name, method string
		params       any
		wantCode     string
		wantField    string
	}{
		{"create wrong type", "session.create", map[string]any{"metadata": 1}, "bad_request", "metadata"},
		{"get without id", "session.get", map[string]any{}, "bad_request", "id"},
		{"update unknown field", "machine.update", map[string]any{"id": "x", "field": "agentState", "value": "", "expectedVersion": 1}, "bad_request", "field"},
		{"append without session", "message.append", map[string]any{"messages": []any{map[string]string{"body": ""}}}, "bad_request", "sessionId"},
		{"since negative", "update.since", map[string]any{"since": -1}, "bad_request", "since"},
		{"list unknown member", "artifact.list", map[string]any{"page": 2}, "bad_request", "page"},
		{"get missing", "artifact.get", map[string]any{"id": "missing"}, "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := call(t, c, tc.method, tc.params, nil)
			pe := asProtocolError(err)
			if pe == nil || string(pe.Code) != tc.wantCode {
				t.Fatalf("got %v, want %s", err, tc.wantCode)
			}
			if tc.wantField != "" && pe.Details["field"] != tc.wantField {
				t.Fatalf("field: got %v, want %q", pe.Details["field"], tc.wantField)
			}
		})
	}
}
