package apps

import (
	"context"

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
	bound, _ := call.Conn.Value(appSessionKey{}).(string)
	ss, err := s.sessionFor(ctx, pr, p.AppID, p.SessionID)
	if err != nil || bound != ss.ID {
		return protocol.StreamSet{}, protocol.Errorf(protocol.CodeNotFound, "no app session %q of app %q on this connection", p.SessionID, p.AppID)
	}
	if ss.State == protocol.AppStateStopped {
		return protocol.StreamSet{}, protocol.Errorf(protocol.CodeConflict, "the app session is stopped (%s)", ss.StopReason).WithDetail("reason", ss.StopReason)
	}
	return s.streams.set(pr, ss.ID, ss.DeviceID, p.Seq, p.Streams), nil
}
