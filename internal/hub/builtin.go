package hub

import (
	"context"
	"slices"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// ClientEventFunc handles an event frame sent by a client (for example
// rpc.progress from a machine). It runs on the read loop and must not block.
type ClientEventFunc func(c *Conn, f *protocol.Frame)

// HandleEvent registers the handler of a client-sent event. Like Register it
// must be called before Start; events without a handler are answered with an
// "error" event.
func (h *Hub) HandleEvent(event string, fn ClientEventFunc) {
	if h.started.Load() {
		panic("hub: HandleEvent after Start")
	}
	if h.events == nil {
		h.events = make(map[string]ClientEventFunc)
	}
	h.events[event] = fn
}

// AddFeature announces a server feature in the welcome event. Call before Start.
func (h *Hub) AddFeature(name string) {
	if !slices.Contains(h.featureList, name) {
		h.featureList = append(h.featureList, name)
	}
}

func (h *Hub) features() []string { return h.featureList }

func (h *Hub) clientEvent(c *Conn, f *protocol.Frame) {
	if fn := h.events[f.Event]; fn != nil {
		fn(c, f)
		return
	}
	data, _ := jsonMarshal(protocol.Errorf(protocol.CodeBadRequest, "unexpected event %q", f.Event))
	c.SendEvent("error", "", "", 0, data)
}

// PingResult is the result of sys.ping.
type PingResult struct {
	Pong   bool  `json:"pong"`
	TimeMs int64 `json:"timeMs"`
}

// InfoResult is the result of sys.info.
type InfoResult struct {
	Protocol    int      `json:"protocol"`
	NodeID      string   `json:"nodeId"`
	Features    []string `json:"features"`
	Methods     []string `json:"methods"`
	Connections int      `json:"connections"`
}

// WhoamiResult is the result of conn.whoami.
type WhoamiResult struct {
	ConnID    string             `json:"connId"`
	NodeID    string             `json:"nodeId"`
	Principal protocol.Principal `json:"principal"`
}

type refreshParams struct {
	Token string `json:"token"`
}

func (p *refreshParams) Validate() error {
	if p.Token == "" {
		return protocol.FieldError("token", "required")
	}
	return nil
}

// RefreshResult is the result of auth.refresh.
type RefreshResult struct {
	ExpiresAtMs int64 `json:"expiresAtMs"`
}

func (h *Hub) registerBuiltins() {
	h.AddFeature("batch")
	h.AddFeature("idem")
	h.Register(Method{Name: "sys.ping", Scope: ScopeAuthenticated, Mode: Inline,
		Handler: func(context.Context, *Call) (any, error) {
			return PingResult{Pong: true, TimeMs: h.deps.Now().UnixMilli()}, nil
		}})
	h.Register(Method{Name: "sys.info", Scope: ScopeAuthenticated, Mode: Inline,
		Handler: func(context.Context, *Call) (any, error) {
			methods := h.Methods()
			slices.Sort(methods)
			return InfoResult{Protocol: protocol.Version, NodeID: h.cfg.NodeID, Features: h.features(), Methods: methods, Connections: h.Len()}, nil
		}})
	h.Register(Method{Name: "conn.whoami", Scope: ScopeAuthenticated, Mode: Inline,
		Handler: func(_ context.Context, call *Call) (any, error) {
			return WhoamiResult{ConnID: call.Conn.id, NodeID: h.cfg.NodeID, Principal: call.Principal.Info()}, nil
		}})
	Handle(h, Method{Name: "auth.refresh", Scope: ScopeAuthenticated}, func(ctx context.Context, call *Call, p *refreshParams) (any, error) {
		if h.deps.Authenticator == nil {
			return nil, protocol.Errorf(protocol.CodeUnavailable, "in-band refresh is not configured")
		}
		np, err := h.deps.Authenticator.Authenticate(ctx, p.Token)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeUnauthorized, "token rejected")
		}
		old := call.Principal
		if np.UserID != old.UserID || np.DeviceID != old.DeviceID || np.AppID != old.AppID || np.Kind != old.Kind {
			return nil, protocol.Errorf(protocol.CodeForbidden, "the new token belongs to another principal")
		}
		if !np.ExpiresAt.IsZero() && !np.ExpiresAt.After(h.deps.Now().Add(time.Second)) {
			return nil, protocol.Errorf(protocol.CodeUnauthorized, "token already expired")
		}
		call.Conn.principal.Store(np)
		h.expiry.renewed(call.Conn)
		return RefreshResult{ExpiresAtMs: np.ExpiresAt.UnixMilli()}, nil
	})
}
