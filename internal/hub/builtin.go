package hub

import (
	"context"
	"reflect"
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
	c.SendEvent(protocol.EventError, "", "", 0, data)
}

// refreshParams are auth.refresh's params, validated here.
type refreshParams protocol.RefreshParams

func (p *refreshParams) Validate() error {
	if p.Token == "" {
		return protocol.FieldError("token", "required")
	}
	return nil
}

func (h *Hub) registerBuiltins() {
	h.AddFeature("batch")
	h.AddFeature("idem")
	h.Register(Method{Name: "sys.ping", Scope: ScopeAuthenticated, Mode: Inline,
		Params: reflect.TypeFor[protocol.Empty](), Result: reflect.TypeFor[protocol.PingResult](),
		Handler: func(context.Context, *Call) (any, error) {
			return protocol.PingResult{Pong: true, TimeMs: h.deps.Now().UnixMilli()}, nil
		}})
	h.Register(Method{Name: "sys.info", Scope: ScopeAuthenticated, Mode: Inline,
		Params: reflect.TypeFor[protocol.Empty](), Result: reflect.TypeFor[protocol.InfoResult](),
		Handler: func(context.Context, *Call) (any, error) {
			methods := h.Methods()
			slices.Sort(methods)
			return protocol.InfoResult{Protocol: protocol.Version, NodeID: h.cfg.NodeID, Features: h.features(), Methods: methods, Connections: h.Len()}, nil
		}})
	h.Register(Method{Name: "conn.whoami", Scope: ScopeAuthenticated, Mode: Inline,
		Params: reflect.TypeFor[protocol.Empty](), Result: reflect.TypeFor[protocol.WhoamiResult](),
		Handler: func(_ context.Context, call *Call) (any, error) {
			return protocol.WhoamiResult{ConnID: call.Conn.ID(), NodeID: h.cfg.NodeID, Principal: call.Principal.Info()}, nil
		}})
	Handle(h, Method{Name: "auth.refresh", Scope: ScopeAuthenticated, Params: reflect.TypeFor[protocol.RefreshParams]()}, func(ctx context.Context, call *Call, p *refreshParams) (*protocol.RefreshResult, error) {
		if h.deps.Authenticator == nil {
			return nil, protocol.Errorf(protocol.CodeUnavailable, "in-band refresh is not configured")
		}
		np, err := h.deps.Authenticator.Authenticate(ctx, p.Token)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeUnauthorized, "token rejected")
		}
		old := call.Principal
		// An app acting for a user refreshes with a key of the same app
		// (a rotation's new key): it goes on acting for that user, with
		// what the user granted now.
		if old.AppID != "" && old.UserID != "" && np.AppID == old.AppID && np.UserID == "" {
			if np, err = h.deps.Authenticator.ForUser(ctx, np, old.UserID); err != nil {
				return nil, protocol.Errorf(protocol.CodeUnauthorized, "token rejected")
			}
		}
		if np.UserID != old.UserID || np.DeviceID != old.DeviceID || np.AppID != old.AppID || np.Kind != old.Kind {
			return nil, protocol.Errorf(protocol.CodeForbidden, "the new token belongs to another principal")
		}
		if !np.ExpiresAt().IsZero() && !np.ExpiresAt().After(h.deps.Now().Add(time.Second)) {
			return nil, protocol.Errorf(protocol.CodeUnauthorized, "token already expired")
		}
		call.Conn.principal.Store(np)
		h.expiry.renewed(call.Conn)
		var ms int64 // 0: the new credential does not expire (an API key without expiry)
		if !np.ExpiresAt().IsZero() {
			ms = np.ExpiresAt().UnixMilli()
		}
		return &protocol.RefreshResult{ExpiresAtMs: ms}, nil
	})
}
