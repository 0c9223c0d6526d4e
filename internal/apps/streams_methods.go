package apps

import (
	"context"
	"sync"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// FeatureStreams is the welcome feature announcing device streams
// (streams.set, streams.publish, streams.demand and binary stream frames).
const FeatureStreams = "streams"

// registerStreams adds the device stream methods and the binary stream
// frame handler to h.
func (s *Service) registerStreams(h *hub.Hub) {
	hub.Handle(h, hub.Method{Name: "streams.set", Scope: hub.ScopeAuthenticated, Mode: hub.Serial}, s.streamSet)
	hub.Handle(h, hub.Method{Name: "streams.publish", Scope: hub.ScopeAuthenticated, Mode: hub.Serial},
		func(_ context.Context, call *hub.Call, p *protocol.StreamPublishParams) (protocol.StreamPublished, error) {
			return s.streams.publish(call.Conn.Principal(), p)
		})
	hub.Handle(h, hub.Method{Name: "streams.demand", Scope: hub.ScopeAuthenticated, Mode: hub.Serial},
		func(_ context.Context, call *hub.Call, _ *protocol.StreamDemandParams) (protocol.StreamDemand, error) {
			pr := call.Conn.Principal()
			if pr.DeviceID == "" || pr.AppID != "" {
				return protocol.StreamDemand{}, protocol.Errorf(protocol.CodeForbidden, "streams.demand is for a device's connection")
			}
			return protocol.StreamDemand{Streams: s.streams.demand(pr.DeviceID)}, nil
		})
	h.SetBinaryHandler(s.streams.binary)
	h.AddFeature(FeatureStreams)
}

// streamSet handles streams.set: only on the connection bound to the
// session (a foreign or unbound session id is not_found, revealing
// nothing), never on a stopped session.
func (s *Service) streamSet(ctx context.Context, call *hub.Call, p *protocol.StreamSetParams) (protocol.StreamSet, error) {
	pr := call.Conn.Principal()
	if pr.AppID == "" {
		return protocol.StreamSet{}, protocol.Errorf(protocol.CodeForbidden, "streams.set is for an app session's connection")
	}
	if err := checkSessionRef(&protocol.AppSessionRef{AppID: p.AppID, SessionID: p.SessionID}); err != nil {
		return protocol.StreamSet{}, err
	}
	switch {
	case p.Seq == 0:
		return protocol.StreamSet{}, protocol.FieldError("seq", "want 1 or more")
	case len(p.Streams) > maxSetStreams:
		return protocol.StreamSet{}, protocol.FieldError("streams", "at most %d", maxSetStreams)
	}
	bound := s.streams.awaitBound(ctx, call.Conn, pr)
	ss, err := s.sessionFor(ctx, pr, p.AppID, p.SessionID)
	if err != nil || bound != ss.ID {
		return protocol.StreamSet{}, protocol.Errorf(protocol.CodeNotFound, "no app session %q of app %q on this connection", p.SessionID, p.AppID)
	}
	if ss.State == protocol.AppStateStopped {
		return protocol.StreamSet{}, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", ss.StopReason)
	}
	return s.streams.set(pr, ss.ID, ss.DeviceID, p.Seq, p.Streams), nil
}

// streamsBoundKey is the hub.Conn value key set once an app session's
// connection is bound and its subscriptions attached (Upgraded).
type streamsBoundKey struct{}

// bindTimeout bounds how long streams.set waits for its connection's
// binding.
const bindTimeout = 5 * time.Second

// bindings wakes the waiters of awaitBound.
type bindings struct {
	mu sync.Mutex
	ch chan struct{} // guarded by mu: closed (and forgotten) at each binding; nil when nobody waits
}

func (b *bindings) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

func (b *bindings) wake() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// bound marks c's binding to its app session done (the end of Upgraded).
func (r *streamRouter) bound(c *hub.Conn) {
	c.SetValue(streamsBoundKey{}, true)
	r.binds.wake()
}

// awaitBound returns the app session id c is bound to. The welcome goes
// out before Upgraded binds the connection, so a quick app's first
// streams.set may come first: a connection acting for a user (a ticket's
// or a resume token's) waits for its binding, at most bindTimeout.
func (r *streamRouter) awaitBound(ctx context.Context, c *hub.Conn, pr *auth.Principal) string {
	if pr.AppID == "" || pr.UserID == "" {
		id, _ := c.Value(appSessionKey{}).(string)
		return id
	}
	timer := time.NewTimer(bindTimeout)
	defer timer.Stop()
	for {
		ch := r.binds.wait()
		if c.Value(streamsBoundKey{}) != nil {
			id, _ := c.Value(appSessionKey{}).(string)
			return id
		}
		select {
		case <-ch:
		case <-c.Done():
			return ""
		case <-ctx.Done():
			return ""
		case <-timer.C:
			return ""
		}
	}
}
