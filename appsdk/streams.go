package appsdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/junctionhq/junction/protocol"
)

// Device streams, settings and tools on a session (docs/apps.md, "Device
// streams", "Settings", "Tools"). Handlers are the Session's: they stay
// registered across reattaches, like the stream set Junction keeps for the
// session.

// MediaFunc handles one binary stream frame (audio…) of a session, decoded
// with protocol.ParseStreamFrame. It runs on the session's event goroutine,
// in order with the events (a stream.gap comes before the frame that
// follows a drop); f.Payload is the handler's to keep.
type MediaFunc func(s *Session, f protocol.StreamFrame)

// ToolFunc runs one tool.invoke: a caller (the user's device, or another
// app for the user) called the app's tool call.Tool with call.Args,
// already checked against the tool's schema. Its result is encoded as
// JSON and becomes the caller's result; a *protocol.Error in its error
// chain is the caller's error (any other error answers internal, and is
// logged). ctx ends when the connection that carried the call ends.
type ToolFunc func(ctx context.Context, s *Session, call protocol.ToolInvoke) (any, error)

// SetStreams sets the session's subscriptions to exactly streams (stream
// ids, or "*" for every stream the granted scopes allow; none:
// unsubscribe from everything) with streams.set, numbering the update
// itself: one above the highest seq it sent or that a hello reported, so
// that it continues after a reattach or a restart of the backend. The
// answer says what was granted and what was rejected, with the reason
// (missing_scope with the scope, unknown_stream, invalid_stream); a
// stateful stream's last value arrives (OnStreamEvent, Snapshot true)
// before it returns. Calls of one session are sent one at a time. Junction
// keeps the set while the session lives, across reattaches. A gateway
// restart loses it: when a reattach's hello reports a seq below the one
// Junction applied, the SDK sets the last applied set again by itself
// (logged; a failure too).
func (s *Session) SetStreams(ctx context.Context, streams ...string) (protocol.StreamSet, error) {
	select {
	case s.setSem <- struct{}{}:
	case <-ctx.Done():
		return protocol.StreamSet{}, fmt.Errorf("appsdk: streams.set: %w", ctx.Err())
	}
	defer func() { <-s.setSem }()
	if streams == nil {
		streams = []string{}
	}
	var res protocol.StreamSet
	// A stale answer means a seq at least as high was applied that this
	// handle did not know of (another instance's): once more above it.
	for range 2 {
		s.mu.Lock()
		s.streamSeq++
		seq := s.streamSeq
		s.mu.Unlock()
		res = protocol.StreamSet{}
		err := s.Call(ctx, "streams.set", protocol.StreamSetParams{
			AppID: s.app.opts.AppID, SessionID: s.id, Seq: seq, Streams: streams,
		}, &res)
		if err != nil {
			return res, fmt.Errorf("appsdk: streams.set: %w", err)
		}
		s.mu.Lock()
		s.streamSeq = max(s.streamSeq, res.Seq)
		if !res.Stale {
			s.setSeq, s.setWant = res.Seq, slices.Clone(streams)
		}
		s.mu.Unlock()
		if !res.Stale {
			return res, nil
		}
	}
	return res, fmt.Errorf("appsdk: streams.set: seq %d still stale", res.Seq)
}

// restoreStreams sets want again after a reattach to a gateway that lost
// the stream set. It runs on the session's run goroutine, right after the
// hello; a SetStreams in flight at that moment wins (it sets the set
// anyway).
func (s *Session) restoreStreams(want []string) {
	select {
	case s.setSem <- struct{}{}:
	default:
		return
	}
	defer func() { <-s.setSem }()
	s.mu.Lock()
	s.streamSeq++
	seq := s.streamSeq
	s.mu.Unlock()
	var res protocol.StreamSet
	err := s.Call(s.ctx, "streams.set", protocol.StreamSetParams{
		AppID: s.app.opts.AppID, SessionID: s.id, Seq: seq, Streams: want,
	}, &res)
	if err != nil {
		s.log.Warn("appsdk: restore the stream set after a gateway restart", "err", err)
		return
	}
	s.mu.Lock()
	s.streamSeq = max(s.streamSeq, res.Seq)
	if !res.Stale {
		s.setSeq = res.Seq
	}
	s.mu.Unlock()
	s.log.Info("appsdk: stream set restored after a gateway restart", "streams", res.Streams, "rejected", len(res.Rejected))
}

// OnStreamEvent registers fn for the session's stream.event events: one
// discrete event, or a stateful stream's retained value (Snapshot), of a
// subscribed stream (ev.Stream is its canonical id).
func (s *Session) OnStreamEvent(fn func(s *Session, ev protocol.StreamEvent)) {
	onData(s, protocol.EventStream, fn)
}

// OnStreamGap registers fn for stream.gap: events or media frames of a
// stream that were not delivered (reason queue: media dropped, oldest
// first, under pressure; history: events older than the history kept
// while the session had no connection).
func (s *Session) OnStreamGap(fn func(s *Session, gap protocol.StreamGap)) {
	onData(s, protocol.EventStreamGap, fn)
}

// OnStreamRevoked registers fn for stream.revoked: a subscription ended
// because the user no longer grants its scope.
func (s *Session) OnStreamRevoked(fn func(s *Session, rev protocol.StreamRevoked)) {
	onData(s, protocol.EventStreamRevoked, fn)
}

// OnSettings registers fn for settings.changed: the user wrote new
// settings of the app (ch.Values, validated against the app's schema, at
// ch.Version). Without a session socket on the node that took the write,
// Junction sends the settings.changed webhook instead (HandleWebhook).
func (s *Session) OnSettings(fn func(s *Session, ch protocol.AppSettingsChanged)) {
	onData(s, protocol.EventSettingsChanged, fn)
}

// OnMedia registers fn for the session's binary stream frames (the media
// streams it subscribed to, such as audio). A frame whose header does not
// decode is logged and skipped.
func (s *Session) OnMedia(fn MediaFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.media = append(s.media, fn)
}

// onData registers fn for event on s, with its data decoded into T.
func onData[T any](s *Session, event string, fn func(*Session, T)) {
	s.OnEvent(event, func(s *Session, f *protocol.Frame) {
		var v T
		if err := json.Unmarshal(f.Data, &v); err != nil {
			s.log.Warn("appsdk: event data does not decode", "event", f.Event, "err", err)
			return
		}
		fn(s, v)
	})
}

// dispatchMedia decodes a binary message of the session's connection and
// runs the OnMedia handlers, on the connection's event goroutine.
func (s *Session) dispatchMedia(b []byte) {
	f, err := protocol.ParseStreamFrame(b)
	if err != nil {
		s.log.Warn("appsdk: dropping a binary message", "bytes", len(b), "err", err)
		return
	}
	s.mu.Lock()
	fns := slices.Clone(s.media)
	s.mu.Unlock()
	for _, fn := range fns {
		fn(s, f)
	}
}

// HandleTool registers fn to run the app's tool name when a caller invokes
// it over a session's socket (the request tool.invoke). A tool.invoke for
// a tool without a handler is answered not_found. Registering a tool twice
// panics. (Calls that reach the backend by webhook, when the user has no
// session socket, are the tool.call webhook: HandleWebhook.)
func (a *App) HandleTool(name string, fn ToolFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, dup := a.tools[name]; dup {
		panic("appsdk: HandleTool: " + name + " registered twice")
	}
	a.tools[name] = fn
}

// serveTool answers a tool.invoke request of the session's connection.
func (s *Session) serveTool(ctx context.Context, req *protocol.Frame) (any, error) {
	var call protocol.ToolInvoke
	if err := json.Unmarshal(req.Params, &call); err != nil {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "tool.invoke params do not decode")
	}
	s.app.mu.Lock()
	fn := s.app.tools[call.Tool]
	s.app.mu.Unlock()
	if fn == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "the app has no handler for tool %q", call.Tool)
	}
	res, err := fn(ctx, s, call)
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			s.log.Error("appsdk: tool failed", "tool", call.Tool, "err", err)
		}
		return nil, err
	}
	return res, nil
}
