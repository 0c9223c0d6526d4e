package apps

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Tools (docs/apps.md, "Tools"): a caller holding the tools scope calls a
// tool an app registered, for the caller's user (who must have installed
// the app). The arguments are validated against the tool's params schema.
// The call goes to one of the user's sessions of the app connected to this
// node as a tool.invoke request, whose answer is the result; when none is
// connected, to the app's backend as a signed tool.call webhook, whose 2xx
// response body (JSON) is the result. Either way within
// Config.ToolTimeout. Calls to one app are rate limited (Config.ToolRate,
// ToolBurst), across all callers.

// maxToolResult bounds a tool's result taken from a webhook response.
const maxToolResult = 64 << 10

// toolLimits are the per-app token buckets of tool calls.
type toolLimits struct {
	mu sync.Mutex              // leaf
	m  map[string]*auth.Bucket // guarded by mu: app id →; idle buckets are dropped when it grows
}

// take spends one call of appID at now; false with the wait when none is
// left.
func (l *toolLimits) take(appID string, now time.Time, rate float64, burst int) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*auth.Bucket{}
	}
	b := l.m[appID]
	if b == nil {
		if len(l.m) >= 4096 {
			for id, x := range l.m {
				if x.Idle(now.UnixNano(), rate) {
					delete(l.m, id)
				}
			}
		}
		b = &auth.Bucket{}
		l.m[appID] = b
	}
	return b.Take(now.UnixNano(), rate, burst)
}

func (s *Service) toolOps() []account.Op {
	a := s.deps.Account
	return []account.Op{
		account.Define(a, account.Op{Name: "tool.call", Scope: protocol.ScopeTools, WS: true,
			Routes: []account.Route{{Method: "POST", Path: "/api/v1/apps/{appId}/tools/{tool}/call", Status: http.StatusOK, OperationID: "callAppTool",
				Summary: "Call a tool of an app installed by the caller's user: over the app's session socket, else by signed webhook; the app's answer is the result", Tag: "Apps",
				Body: "ToolCallRequest", BodyOptional: true, Result: "ToolCallResult", PathParams: map[string]string{"appId": "appId", "tool": "tool"}}},
		}, protocol.ToolCallResult{}, checkToolCall, s.callTool),
	}
}

func checkToolCall(p *protocol.ToolCallParams) error {
	if err := checkID("appId", p.AppID); err != nil {
		return err
	}
	if !validWord(p.Tool) {
		return protocol.FieldError("tool", "want 1..%d characters of [a-z0-9._:-]", maxWordLen)
	}
	if len(p.Args) == 0 || string(p.Args) == "null" {
		p.Args = json.RawMessage(`{}`)
	}
	if !isObject(p.Args) {
		return protocol.FieldError("args", "want a JSON object")
	}
	if len(p.Args) > maxSchemaBytes {
		return protocol.FieldError("args", "over %d bytes", maxSchemaBytes)
	}
	return nil
}

func (s *Service) callTool(ctx context.Context, pr *auth.Principal, p *protocol.ToolCallParams) (any, error) {
	if pr.UserID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "tool.call acts for a user: call with a user's credential, or an app acting for one")
	}
	app, err := s.deps.Store.App(ctx, p.AppID)
	if err != nil {
		return nil, err
	}
	var tools []protocol.AppTool
	_ = json.Unmarshal(app.Tools, &tools) // written by appFromParams
	var tool *protocol.AppTool
	for i := range tools {
		if tools[i].Name == p.Tool {
			tool = &tools[i]
		}
	}
	if tool == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "app %q has no tool %q", app.ID, p.Tool)
	}
	if _, err := s.deps.Store.Install(ctx, app.ID, pr.UserID); errors.Is(err, store.ErrNotFound) {
		return nil, protocol.Errorf(protocol.CodeForbidden, "the user has not installed app %q", app.ID).WithDetail("reason", auth.ReasonNotInstalled)
	} else if err != nil {
		return nil, err
	}
	if len(tool.Params) > 0 {
		sch, err := s.schemas.compile(tool.Params)
		if err != nil {
			return nil, schemaError("tool "+tool.Name+" params", err)
		}
		if err := validate(sch, p.Args, "args"); err != nil {
			return nil, err
		}
	}
	if wait, ok := s.tools.take(app.ID, s.deps.Now(), s.cfg.ToolRate, s.cfg.ToolBurst); !ok {
		return nil, protocol.Errorf(protocol.CodeRateLimited, "too many tool calls to app %q", app.ID).
			WithDetail("retryAfterMs", max(wait.Milliseconds(), 1))
	}
	id := make([]byte, 12)
	_, _ = rand.Read(id)
	inv := protocol.ToolInvoke{CallID: "tc" + hex.EncodeToString(id), AppID: app.ID, UserID: s.pseudonym(app.ID, pr.UserID),
		Tool: tool.Name, Args: p.Args}
	if pr.AppID != "" {
		inv.CallerAppID = pr.AppID
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ToolTimeout)
	defer cancel()
	if c, sid := s.toolConn(ctx, app.ID, pr.UserID); c != nil {
		inv.SessionID = sid
		return s.toolOverSocket(ctx, c, inv)
	}
	return s.toolOverWebhook(ctx, inv)
}

// toolConn returns a connection on this node of one of the user's sessions
// of the app (a running one first).
func (s *Service) toolConn(ctx context.Context, appID, userID string) (*hub.Conn, string) {
	sessions, err := s.deps.Store.ActiveAppSessionsOfUser(ctx, appID, userID)
	if err != nil {
		s.log.Warn("apps: find a session for a tool call; using the webhook", "app", appID, "err", err)
		return nil, ""
	}
	s.live.mu.Lock()
	defer s.live.mu.Unlock()
	for _, ss := range sessions {
		if ls := s.live.m[ss.ID]; ls != nil && ls.conn != nil && !ls.conn.Closed() {
			return ls.conn, ss.ID
		}
	}
	return nil, ""
}

func (s *Service) toolOverSocket(ctx context.Context, c *hub.Conn, inv protocol.ToolInvoke) (any, error) {
	params, _ := json.Marshal(inv)
	f, _, err := c.Request(ctx, protocol.MethodToolInvoke, params, nil)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return nil, protocol.Errorf(protocol.CodeTimeout, "the app did not answer tool %q within %s", inv.Tool, s.cfg.ToolTimeout).WithDetail("via", "socket")
	case err != nil:
		return nil, err
	case !f.OK:
		if f.Error != nil {
			e := *f.Error
			return nil, e.WithDetail("via", "socket")
		}
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the app failed tool %q", inv.Tool)
	}
	res := f.Result
	if len(res) == 0 {
		res = json.RawMessage(`null`)
	}
	return protocol.ToolCallResult{Result: res, Via: "socket"}, nil
}

func (s *Service) toolOverWebhook(ctx context.Context, inv protocol.ToolInvoke) (any, error) {
	inv.Type = "tool.call"
	body, _ := json.Marshal(inv)
	t, err := s.target(ctx, inv.AppID)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the app has no session socket and no usable webhook: %v", err).WithDetail("via", "webhook")
	}
	res, err := s.deliv.Deliver(ctx, t, delivery.Message{Body: body, Header: http.Header{"Junction-Event": {inv.Type}}, ReadBody: maxToolResult})
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, protocol.Errorf(protocol.CodeTimeout, "the app's webhook did not answer tool %q within %s", inv.Tool, s.cfg.ToolTimeout).WithDetail("via", "webhook")
	case err != nil:
		return nil, protocol.Errorf(protocol.CodeUnavailable, "tool.call webhook failed: %v", err).WithDetail("via", "webhook").WithDetail("status", res.Status)
	case res.BodyTruncated:
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the app's tool result is over %d bytes", maxToolResult).WithDetail("via", "webhook")
	}
	out := bytes.TrimSpace(res.Body)
	if len(out) == 0 {
		out = []byte("null")
	}
	if !json.Valid(out) {
		return nil, protocol.Errorf(protocol.CodeUnavailable, "the app's tool webhook answered a body that is not JSON").WithDetail("via", "webhook")
	}
	return protocol.ToolCallResult{Result: out, Via: "webhook"}, nil
}
