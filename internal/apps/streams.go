package apps

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// Device streams (docs/apps.md, "Device streams"). Each device has its
// streams, named by stream ids (protocol.CanonicalStream); the topic of a
// stream is stream:<deviceId>:<id>. An app session holds a set of them,
// replaced as a whole by streams.set with a sequence number; the set is
// server-held state keyed by the app session id (streamRouter.put/get/
// drop), kept while the app's connection is down and until the session
// stops.
//
// Scopes are checked when a stream is subscribed and again at every
// delivery, against the connection's principal of the moment: a narrowed
// installation (hub.Hub.Reauthorize) stops delivery at once, and the
// subscription is removed with stream.revoked. Checks fail closed: no
// connection, no principal or no scope, no delivery.
//
// Discrete events (streams.publish) are numbered per stream, delivered in
// order, and kept (StreamHistory per stream) so that a session whose
// connection came back gets what it missed, or a stream.gap saying how
// many it cannot get. Stateful streams keep their last value, sent with
// snapshot true on subscribe and on resume. Media (binary stream frames)
// are forwarded byte for byte through a bounded queue per subscription:
// frames wait there while the connection's socket queue holds
// StreamInflightFrames, the oldest are dropped when it is full, and the
// next frame delivered is preceded by stream.gap with the count.
//
// The device is told which of its streams have subscribers (stream.demand)
// whenever that set changes, and may ask (streams.demand).
//
// All state is this node's memory: a device and the apps subscribing to it
// must be connected to the same node (a cluster routes them by the device
// claim), and a gateway restart loses the sets (the apps set them again).

// streamKind describes the streams of one name.
type streamKind struct {
	scope    string   // the scope an app needs to subscribe and to receive
	stateful bool     // the last value is retained and sent on subscribe and resume
	media    bool     // binary stream frames only; otherwise discrete JSON events only
	params   []string // the parameter keys it takes
}

// streamKinds is the catalogue of device streams, by name.
var streamKinds = map[string]streamKind{
	"audio":         {scope: "stream:audio", media: true, params: []string{"format", "rate"}},
	"transcript":    {scope: "stream:transcript", params: []string{"lang"}},
	"button":        {scope: "stream:button"},
	"head_pose":     {scope: "stream:head_pose", stateful: true},
	"location":      {scope: "stream:location", stateful: true, params: []string{"accuracy"}},
	"notifications": {scope: "stream:notifications"},
	"battery":       {scope: "stream:battery", stateful: true},
}

// StreamScopePrefix starts the scopes of device streams. A user may grant
// them to an app without holding them (they consent to their own device's
// data).
const StreamScopePrefix = "stream:"

const (
	// streamPumpInterval is how often media frames waiting for room in an
	// app's socket queue are tried again.
	streamPumpInterval = 20 * time.Millisecond

	maxSetStreams    = 64 // stream ids in one streams.set
	maxDeviceStreams = 32 // streams a device may have published to (each may retain a value and keep history)
	// maxHistoryBytes bounds the data of a stream's kept events, whatever
	// StreamHistory says.
	maxHistoryBytes = 256 << 10
)

// resolveStream canonicalizes a stream id and finds its kind; a failure is
// a rejection (the caller fills in the requested id).
func resolveStream(id string) (string, streamKind, *protocol.StreamRejection) {
	canon, name, err := protocol.CanonicalStream(id)
	if err != nil {
		return "", streamKind{}, &protocol.StreamRejection{Stream: id, Reason: protocol.StreamRejectInvalid,
			Message: "not a stream id: name or name?key=value&..., lower-case letters, digits, _ (values also . and -), at most 64 bytes"}
	}
	k, ok := streamKinds[name]
	if !ok {
		return "", streamKind{}, &protocol.StreamRejection{Stream: id, Reason: protocol.StreamRejectUnknown, Message: fmt.Sprintf("no device stream %q", name)}
	}
	for _, key := range protocol.StreamParams(canon) {
		if !slices.Contains(k.params, key) {
			return "", streamKind{}, &protocol.StreamRejection{Stream: id, Reason: protocol.StreamRejectInvalid,
				Message: fmt.Sprintf("stream %q takes no parameter %q (it takes %v)", name, key, k.params)}
		}
	}
	return canon, k, nil
}

// streamRouter is this node's device streams. Lock order: mu, then the
// hub's registry and connection locks (it queues frames while holding mu,
// which keeps each stream's frames in order).
type streamRouter struct {
	cfg Config       // set once
	hub *hub.Hub     // set once
	log *slog.Logger // set once
	now func() time.Time

	dropped prometheus.Counter // media frames dropped by drop-oldest
	gaps    prometheus.Counter // stream.gap events sent

	binds bindings // wakes streams.set calls waiting for their connection's binding

	mu       sync.Mutex
	devices  map[string]*deviceStreams   // guarded by mu: device id →
	sessions map[string]*streamSession   // guarded by mu: app session id → (the server-held sets)
	backlog  map[*streamSession]struct{} // guarded by mu: sessions with media frames waiting for room
}

// deviceStreams is one device's streams.
type deviceStreams struct {
	id       string
	subs     map[string]map[*streamSession]struct{} // stream → the sessions subscribing
	seq      map[string]uint64                      // stream → its last event's seq
	history  map[string][]protocol.StreamEvent      // stream → its last events (at most StreamHistory), while it has subscribers
	retained map[string]protocol.StreamEvent        // stateful stream → its last event
	demand   []string                               // the demand last sent, sorted
}

// streamSession is an app session's subscriptions.
type streamSession struct {
	id       string
	deviceID string
	seq      uint64                // the last applied streams.set seq
	subs     map[string]*streamSub // canonical stream id →
	conn     *hub.Conn             // the app's connection; nil while it has none
}

// streamSub is one subscription of a session.
type streamSub struct {
	kind    streamKind
	last    uint64   // discrete: the seq of the last event handed to the connection
	queue   [][]byte // media: prepared frames waiting for room, oldest first, at most StreamQueueFrames
	dropped uint64   // media: frames dropped since the last stream.gap
}

func newStreamRouter(cfg Config, h *hub.Hub, log *slog.Logger, now func() time.Time, reg prometheus.Registerer) *streamRouter {
	r := &streamRouter{cfg: cfg, hub: h, log: log, now: now,
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "junction_app_stream_dropped_total",
			Help: "Media frames of device streams dropped (oldest first) because an app's connection did not keep up."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "junction_app_stream_gaps_total",
			Help: "stream.gap events sent to apps (media dropped under pressure, events older than the kept history)."}),
		devices: map[string]*deviceStreams{}, sessions: map[string]*streamSession{}, backlog: map[*streamSession]struct{}{}}
	if reg != nil {
		reg.MustRegister(r.dropped, r.gaps)
	}
	return r
}

// deviceLocked returns a device's streams, created when absent.
func (r *streamRouter) deviceLocked(id string) *deviceStreams {
	d := r.devices[id]
	if d == nil {
		d = &deviceStreams{id: id, subs: map[string]map[*streamSession]struct{}{}, seq: map[string]uint64{},
			history: map[string][]protocol.StreamEvent{}, retained: map[string]protocol.StreamEvent{}}
		r.devices[id] = d
	}
	return d
}

// put returns the session's subscription state, created (empty, for
// deviceID) when absent.
func (r *streamRouter) putLocked(id, deviceID string) *streamSession {
	ss := r.sessions[id]
	if ss == nil {
		ss = &streamSession{id: id, deviceID: deviceID, subs: map[string]*streamSub{}}
		r.sessions[id] = ss
	}
	return ss
}

// get returns a session's effective set, canonical and sorted, and the
// last applied seq; an unknown session has the empty set and seq 0.
func (r *streamRouter) get(id string) (streams []string, seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.sessions[id]
	if ss == nil {
		return []string{}, 0
	}
	return ss.list(), ss.seq
}

// drop forgets a session's subscriptions (it stopped): its streams lose a
// subscriber and the device's demand is updated.
func (r *streamRouter) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.sessions[id]
	if ss == nil {
		return
	}
	delete(r.sessions, id)
	delete(r.backlog, ss)
	d := r.deviceLocked(ss.deviceID)
	for canon := range ss.subs {
		r.unsubLocked(ss, d, canon)
	}
	r.demandLocked(d)
}

// attach binds a session's new connection (its first, or one that
// resumed): subscriptions whose scope the connection lacks are revoked;
// stateful streams get their retained value (snapshot), discrete ones the
// events they missed that are still kept (or stream.gap), media their
// queued frames.
func (r *streamRouter) attach(id, deviceID string, c *hub.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.putLocked(id, deviceID)
	ss.conn = c
	d := r.deviceLocked(deviceID)
	pr := c.Principal()
	for _, canon := range ss.list() {
		sub := ss.subs[canon]
		if !pr.HasScope(sub.kind.scope) {
			r.revokeLocked(ss, d, canon, sub)
			continue
		}
		switch {
		case sub.kind.media:
			r.flushLocked(ss, canon, sub)
		case sub.kind.stateful:
			r.snapshotLocked(ss, d, canon, sub)
		default:
			r.replayLocked(ss, d, canon, sub)
		}
	}
	r.demandLocked(d)
}

// detach unbinds a session's connection c (it closed); the subscriptions
// stay.
func (r *streamRouter) detach(id string, c *hub.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ss := r.sessions[id]; ss != nil && ss.conn == c {
		ss.conn = nil
		delete(r.backlog, ss)
	}
}

// recheck revokes the subscriptions of c's session that c's principal no
// longer allows (after a narrowed installation).
func (r *streamRouter) recheck(c *hub.Conn) {
	id, _ := c.Value(appSessionKey{}).(string)
	if id == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.sessions[id]
	if ss == nil || ss.conn != c {
		return
	}
	d := r.deviceLocked(ss.deviceID)
	pr := c.Principal()
	for _, canon := range ss.list() {
		if sub := ss.subs[canon]; !pr.HasScope(sub.kind.scope) {
			r.revokeLocked(ss, d, canon, sub)
		}
	}
	r.demandLocked(d)
}

// set applies a streams.set of session id (of device deviceID) by the
// connection's principal pr.
func (r *streamRouter) set(pr *auth.Principal, id, deviceID string, seq uint64, streams []string) protocol.StreamSet {
	r.mu.Lock()
	defer r.mu.Unlock()
	ss := r.putLocked(id, deviceID)
	out := protocol.StreamSet{SessionID: id, Granted: []string{}, Rejected: []protocol.StreamRejection{}}
	if seq <= ss.seq {
		out.Seq, out.Stale, out.Streams = ss.seq, true, ss.list()
		return out
	}
	want := map[string]streamKind{}
	grant := func(canon string, k streamKind) {
		if _, dup := want[canon]; !dup {
			want[canon] = k
			out.Granted = append(out.Granted, canon)
		}
	}
	for _, req := range streams {
		if req == "*" {
			// Expands only inside the granted scopes.
			for name, k := range streamKinds {
				if pr.HasScope(k.scope) {
					grant(name, k)
				}
			}
			continue
		}
		canon, k, rej := resolveStream(req)
		switch {
		case rej != nil:
			out.Rejected = append(out.Rejected, *rej)
		case !pr.HasScope(k.scope):
			out.Rejected = append(out.Rejected, protocol.StreamRejection{Stream: req, Reason: protocol.StreamRejectMissingScope, Scope: k.scope,
				Message: fmt.Sprintf("the user has not granted scope %q", k.scope)})
		default:
			grant(canon, k)
		}
	}
	d := r.deviceLocked(deviceID)
	for _, canon := range ss.list() {
		if _, keep := want[canon]; !keep {
			r.unsubLocked(ss, d, canon)
		}
	}
	added := []string{}
	for canon, k := range want {
		if ss.subs[canon] != nil {
			continue
		}
		ss.subs[canon] = &streamSub{kind: k, last: d.seq[canon]}
		if d.subs[canon] == nil {
			d.subs[canon] = map[*streamSession]struct{}{}
		}
		d.subs[canon][ss] = struct{}{}
		added = append(added, canon)
	}
	sort.Strings(added)
	for _, canon := range added {
		if sub := ss.subs[canon]; sub.kind.stateful {
			r.snapshotLocked(ss, d, canon, sub)
		}
	}
	ss.seq = seq
	r.demandLocked(d)
	sort.Strings(out.Granted)
	out.Seq, out.Streams = ss.seq, ss.list()
	return out
}

// publish handles a device's discrete event.
func (r *streamRouter) publish(pr *auth.Principal, p *protocol.StreamPublishParams) (protocol.StreamPublished, error) {
	if pr.DeviceID == "" || pr.AppID != "" {
		return protocol.StreamPublished{}, protocol.Errorf(protocol.CodeForbidden, "only a device's connection publishes its streams")
	}
	canon, k, rej := resolveStream(p.Stream)
	switch {
	case rej != nil:
		return protocol.StreamPublished{}, protocol.FieldError("stream", "%s", rej.Message)
	case k.media:
		return protocol.StreamPublished{}, protocol.FieldError("stream", "%q is a media stream: send it in binary stream frames", canon)
	case len(p.Data) == 0:
		return protocol.StreamPublished{}, protocol.FieldError("data", "required")
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.deviceLocked(pr.DeviceID)
	if _, known := d.seq[canon]; !known && len(d.seq) >= maxDeviceStreams {
		return protocol.StreamPublished{}, protocol.Errorf(protocol.CodeTooLarge, "the device has published to %d streams already", maxDeviceStreams).
			WithDetail("limit", maxDeviceStreams)
	}
	d.seq[canon]++
	ev := protocol.StreamEvent{Stream: canon, Seq: d.seq[canon], TimeMs: now.UnixMilli(), Data: slices.Clone(p.Data)}
	if k.stateful {
		d.retained[canon] = ev
	}
	out := protocol.StreamPublished{Stream: canon, Seq: ev.Seq}
	subs := d.subs[canon]
	if len(subs) == 0 {
		delete(d.history, canon)
		return out, nil
	}
	if !k.stateful {
		d.history[canon] = trimHistory(append(d.history[canon], ev), r.cfg.StreamHistory)
	}
	frame := eventFrame(ev)
	for ss := range subs {
		sub := ss.subs[canon]
		if ss.conn == nil {
			continue // resumes from history (or its snapshot)
		}
		if !ss.conn.Principal().HasScope(sub.kind.scope) {
			r.revokeLocked(ss, d, canon, sub)
			continue
		}
		if ss.conn.SendPrepared(frame) {
			// Counted as delivered only once queued: one lost to a closing
			// connection is replayed when the session resumes.
			out.Delivered++
			sub.last = ev.Seq
		}
	}
	r.demandLocked(d)
	return out, nil
}

// binary handles a binary message (hub.BinaryHandler): a device's media
// stream frame, forwarded as it is to the subscribed sessions.
func (r *streamRouter) binary(c *hub.Conn, payload []byte) {
	pr := c.Principal()
	if pr == nil || pr.DeviceID == "" || pr.AppID != "" {
		c.Close(protocol.CloseUnsupportedData, "binary messages are device stream frames, from a device")
		return
	}
	fr, err := protocol.ParseStreamFrame(payload)
	if err != nil {
		c.Close(protocol.CloseUnsupportedData, err.Error())
		return
	}
	canon, k, rej := resolveStream(fr.Stream)
	if rej == nil && !k.media {
		rej = &protocol.StreamRejection{Message: fmt.Sprintf("%q is a discrete stream: publish it with streams.publish", canon)}
	}
	if rej != nil {
		e := protocol.FieldError("stream", "%s", rej.Message).WithDetail("stream", fr.Stream).WithDetail("seq", fr.Seq)
		data, _ := json.Marshal(e)
		c.SendEvent(protocol.EventError, "", "", 0, data)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.devices[pr.DeviceID]
	if d == nil || len(d.subs[canon]) == 0 {
		return // no demand: the device was told (stream.demand)
	}
	frame := hub.PrepareBinary(payload)
	for ss := range d.subs[canon] {
		sub := ss.subs[canon]
		if ss.conn != nil && !ss.conn.Principal().HasScope(sub.kind.scope) {
			r.revokeLocked(ss, d, canon, sub)
			continue
		}
		if len(sub.queue) >= r.cfg.StreamQueueFrames {
			sub.queue[0] = nil
			sub.queue = sub.queue[1:]
			sub.dropped++
			r.dropped.Inc()
		}
		sub.queue = append(sub.queue, frame)
		r.flushLocked(ss, canon, sub)
	}
	r.demandLocked(d)
}

// flushLocked moves a media subscription's queued frames to the
// connection while its socket queue has room, the stream.gap of frames
// dropped before them first; what is left waits for the pump.
func (r *streamRouter) flushLocked(ss *streamSession, canon string, sub *streamSub) {
	c := ss.conn
	if c == nil {
		return
	}
	for len(sub.queue) > 0 {
		if frames, _ := c.QueueLen(); frames >= r.cfg.StreamInflightFrames {
			r.backlog[ss] = struct{}{}
			return
		}
		if sub.dropped > 0 {
			r.gapLocked(c, canon, sub.dropped, protocol.GapQueue)
			sub.dropped = 0
		}
		f := sub.queue[0]
		sub.queue[0] = nil
		sub.queue = sub.queue[1:]
		c.SendBinary(f)
	}
	if sub.dropped > 0 {
		r.gapLocked(c, canon, sub.dropped, protocol.GapQueue)
		sub.dropped = 0
	}
}

// pump flushes the media waiting for room, every StreamPumpInterval, until
// ctx ends.
func (r *streamRouter) pump(ctx context.Context) {
	t := time.NewTicker(streamPumpInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		for ss := range r.backlog {
			delete(r.backlog, ss)
			for canon, sub := range ss.subs {
				if len(sub.queue) > 0 {
					r.flushLocked(ss, canon, sub)
				}
			}
		}
		r.mu.Unlock()
	}
}

// snapshotLocked sends a stateful stream's retained value, marked
// snapshot.
func (r *streamRouter) snapshotLocked(ss *streamSession, d *deviceStreams, canon string, sub *streamSub) {
	ev, ok := d.retained[canon]
	if !ok || ss.conn == nil {
		return
	}
	ev.Snapshot = true
	ss.conn.SendPrepared(eventFrame(ev))
	sub.last = ev.Seq
}

// replayLocked sends a discrete stream's kept events after the last one
// the session got, with stream.gap for those no longer kept.
func (r *streamRouter) replayLocked(ss *streamSession, d *deviceStreams, canon string, sub *streamSub) {
	next := sub.last + 1
	for _, ev := range d.history[canon] {
		if ev.Seq < next {
			continue
		}
		if ev.Seq > next {
			r.gapLocked(ss.conn, canon, ev.Seq-next, protocol.GapHistory)
		}
		ss.conn.SendPrepared(eventFrame(ev))
		next = ev.Seq + 1
	}
	if last := d.seq[canon]; last >= next {
		r.gapLocked(ss.conn, canon, last-next+1, protocol.GapHistory)
		next = last + 1
	}
	sub.last = next - 1
}

func (r *streamRouter) gapLocked(c *hub.Conn, canon string, n uint64, reason string) {
	data, _ := json.Marshal(protocol.StreamGap{Stream: canon, Count: n, Reason: reason})
	c.SendEvent(protocol.EventStreamGap, "", "", 0, data)
	r.gaps.Inc()
}

// unsubLocked removes one subscription of ss.
func (r *streamRouter) unsubLocked(ss *streamSession, d *deviceStreams, canon string) {
	delete(ss.subs, canon)
	if m := d.subs[canon]; m != nil {
		delete(m, ss)
		if len(m) == 0 {
			delete(d.subs, canon)
			delete(d.history, canon)
		}
	}
}

// revokeLocked removes a subscription whose scope is gone and tells the
// session's connection.
func (r *streamRouter) revokeLocked(ss *streamSession, d *deviceStreams, canon string, sub *streamSub) {
	r.unsubLocked(ss, d, canon)
	if ss.conn != nil {
		data, _ := json.Marshal(protocol.StreamRevoked{Stream: canon, Scope: sub.kind.scope})
		ss.conn.SendEvent(protocol.EventStreamRevoked, "", "", 0, data)
	}
	r.log.Info("app stream subscription revoked", "session", ss.id, "stream", canon, "scope", sub.kind.scope)
}

// demandLocked sends the device its demand when it changed.
func (r *streamRouter) demandLocked(d *deviceStreams) {
	now := d.demandList()
	if slices.Equal(now, d.demand) {
		return
	}
	d.demand = now
	if c := r.hub.ConnOfDevice(d.id); c != nil {
		data, _ := json.Marshal(protocol.StreamDemand{Streams: now})
		c.SendEvent(protocol.EventStreamDemand, "", "", 0, data)
	}
}

// demand returns a device's streams that have subscribers, sorted.
func (r *streamRouter) demand(deviceID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.devices[deviceID]; d != nil {
		return d.demandList()
	}
	return []string{}
}

func (d *deviceStreams) demandList() []string {
	out := make([]string, 0, len(d.subs))
	for canon, m := range d.subs {
		if len(m) > 0 {
			out = append(out, canon)
		}
	}
	sort.Strings(out)
	return out
}

// list returns the session's streams, sorted.
func (ss *streamSession) list() []string {
	out := make([]string, 0, len(ss.subs))
	for canon := range ss.subs {
		out = append(out, canon)
	}
	sort.Strings(out)
	return out
}

// eventFrame prepares a stream.event frame.
func eventFrame(ev protocol.StreamEvent) []byte {
	data, _ := json.Marshal(ev)
	return hub.PrepareEvent(protocol.EventStream, data)
}

// trimHistory drops a stream's oldest kept events beyond n events or
// maxHistoryBytes of data (the newest is always kept).
func trimHistory(h []protocol.StreamEvent, n int) []protocol.StreamEvent {
	size, keep := 0, 0
	for i := len(h) - 1; i >= 0 && keep < n; i-- {
		size += len(h[i].Data)
		if size > maxHistoryBytes && keep > 0 {
			break
		}
		keep++
	}
	if keep < len(h) {
		h = slices.Delete(h, 0, len(h)-keep)
	}
	return h
}
