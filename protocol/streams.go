package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strings"
)

// Device streams (docs/apps.md, "Device streams"): a device publishes its
// data streams (button, head pose, location, transcript, audio...); an app
// session subscribes to a set of them. Discrete events are JSON
// (streams.publish → stream.event); continuous media travel as binary
// WebSocket messages with a stream header (StreamFrame).

// Events of device streams.
const (
	// EventStream carries one discrete event of a subscribed stream to an
	// app (StreamEvent).
	EventStream = "stream.event"
	// EventStreamGap tells an app that events or media frames of a stream
	// were not delivered to it (StreamGap).
	EventStreamGap = "stream.gap"
	// EventStreamDemand tells a device which of its streams have
	// subscribers, whenever that set changes (StreamDemand).
	EventStreamDemand = "stream.demand"
	// EventStreamRevoked tells an app that a subscription was removed
	// because the scope it needs is no longer granted (StreamRevoked).
	EventStreamRevoked = "stream.revoked"
)

// Reasons of a rejected stream (StreamRejection.Reason).
const (
	StreamRejectInvalid      = "invalid_stream"
	StreamRejectUnknown      = "unknown_stream"
	StreamRejectMissingScope = "missing_scope"
)

// Reasons of a gap (StreamGap.Reason).
const (
	// GapQueue: media frames dropped, oldest first, because the app's
	// connection did not keep up.
	GapQueue = "queue"
	// GapHistory: discrete events published while the app had no
	// connection that are older than the kept history.
	GapHistory = "history"
)

// StreamSetParams are the params of streams.set: the whole set of streams
// the app session wants, with a sequence number.
type StreamSetParams struct {
	AppID     string `json:"appId"`
	SessionID string `json:"sessionId" doc:"the app session this connection is bound to"`
	// Seq orders updates: one whose seq is not above the last applied one
	// changes nothing (answered with stale true and the current set).
	Seq     uint64   `json:"seq" schema:"min=1" doc:"greater than every seq applied before; stale updates are ignored"`
	Streams []string `json:"streams" schema:"nonnull" doc:"stream ids (name or name?key=value&...), or * for every stream the granted scopes allow"`
}

// StreamRejection is one stream of a streams.set that was not granted.
type StreamRejection struct {
	Stream  string `json:"stream" doc:"as requested"`
	Reason  string `json:"reason" schema:"enum=invalid_stream|unknown_stream|missing_scope"`
	Scope   string `json:"scope,omitempty" doc:"the scope that is missing (missing_scope)"`
	Message string `json:"message"`
}

// StreamSet answers streams.set.
type StreamSet struct {
	SessionID string `json:"sessionId"`
	Seq       uint64 `json:"seq" doc:"the last applied seq"`
	Stale     bool   `json:"stale" doc:"the update's seq was not above the last applied one: nothing changed"`
	// Streams is the effective set after the update, canonical and sorted:
	// what apps.hello's subscriptions returns.
	Streams  []string          `json:"streams" schema:"nonnull"`
	Granted  []string          `json:"granted" schema:"nonnull" doc:"canonical ids of the requested streams that are subscribed"`
	Rejected []StreamRejection `json:"rejected" schema:"nonnull"`
}

// StreamPublishParams are the params of streams.publish (a device's
// discrete event).
type StreamPublishParams struct {
	Stream string          `json:"stream" doc:"a stream id of a discrete stream"`
	Data   json.RawMessage `json:"data" doc:"the event, any JSON value"`
}

// StreamPublished answers streams.publish.
type StreamPublished struct {
	Stream    string `json:"stream" doc:"canonical id"`
	Seq       uint64 `json:"seq" doc:"the event's sequence number in the stream (1, 2, ...)"`
	Delivered int    `json:"delivered" doc:"app connections it was queued to"`
}

// StreamDemandParams are the params of streams.demand (none).
type StreamDemandParams struct{}

// StreamEvent is EventStream's data.
type StreamEvent struct {
	Stream string          `json:"stream" doc:"canonical id"`
	Seq    uint64          `json:"seq" doc:"consecutive per stream; a gap is announced by stream.gap"`
	TimeMs int64           `json:"timeMs" doc:"when the gateway received it, Unix milliseconds"`
	Data   json.RawMessage `json:"data"`
	// Snapshot marks the retained last value of a stateful stream, sent on
	// subscribe and on resume.
	Snapshot bool `json:"snapshot,omitempty" doc:"the retained last value of a stateful stream (on subscribe and on resume)"`
}

// StreamGap is EventStreamGap's data.
type StreamGap struct {
	Stream string `json:"stream"`
	Count  uint64 `json:"count" doc:"events or frames not delivered"`
	Reason string `json:"reason" schema:"enum=queue|history"`
}

// StreamDemand is EventStreamDemand's data and streams.demand's result.
type StreamDemand struct {
	Streams []string `json:"streams" schema:"nonnull" doc:"canonical ids of the device's streams that have subscribers, sorted"`
}

// StreamRevoked is EventStreamRevoked's data.
type StreamRevoked struct {
	Stream string `json:"stream"`
	Scope  string `json:"scope" doc:"the scope no longer granted"`
}

// Stream ids. A stream id is a name, optionally followed by parameters:
// "transcript?lang=en-US". Canonical form: lower case, parameters sorted by
// key, no duplicate key; names and keys of [a-z0-9_], values of
// [a-z0-9_.-]; at most MaxStreamParams parameters and MaxStreamIDLength
// bytes in all. Two ids name the same stream exactly when their canonical
// forms are equal.
const (
	MaxStreamIDLength = 64
	MaxStreamParams   = 4
)

// ErrStreamID is the error of CanonicalStream for an id that is not a
// stream id.
var ErrStreamID = errors.New("invalid stream id")

// CanonicalStream returns the canonical form of a stream id, its name and
// whether it has parameters.
func CanonicalStream(id string) (canon, name string, err error) {
	if id == "" || len(id) > MaxStreamIDLength {
		return "", "", ErrStreamID
	}
	id = strings.ToLower(id)
	name, rest, hasParams := strings.Cut(id, "?")
	if !streamWord(name, false) {
		return "", "", ErrStreamID
	}
	if !hasParams {
		return name, name, nil
	}
	parts := strings.Split(rest, "&")
	if len(parts) > MaxStreamParams {
		return "", "", ErrStreamID
	}
	for _, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok || !streamWord(k, false) || !streamWord(v, true) {
			return "", "", ErrStreamID
		}
	}
	slices.SortFunc(parts, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	for i := 1; i < len(parts); i++ {
		ka, _, _ := strings.Cut(parts[i-1], "=")
		kb, _, _ := strings.Cut(parts[i], "=")
		if ka == kb {
			return "", "", ErrStreamID
		}
	}
	return name + "?" + strings.Join(parts, "&"), name, nil
}

// StreamParams returns the parameter keys of a canonical stream id.
func StreamParams(canon string) []string {
	_, rest, ok := strings.Cut(canon, "?")
	if !ok {
		return nil
	}
	var keys []string
	for _, p := range strings.Split(rest, "&") {
		k, _, _ := strings.Cut(p, "=")
		keys = append(keys, k)
	}
	return keys
}

func streamWord(s string, value bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || value && (c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// Binary stream frames (docs/PROTOCOL.md, "Binary stream frames"): one
// binary WebSocket message is
//
//	offset  size  field
//	0       1     version, StreamFrameVersion (1)
//	1       1     n, the length of the stream id, 1..MaxStreamIDLength
//	2       n     the stream id, canonical (CanonicalStream)
//	2+n     4     seq, big-endian uint32: the sender's frame counter of the stream
//	6+n     rest  payload (the media bytes)
//
// The gateway forwards a device's frame to the subscribed apps byte for
// byte.
const StreamFrameVersion = 1

// StreamFrameOverhead is the header size of a stream frame without its id.
const StreamFrameOverhead = 6

// StreamFrame is a decoded binary stream frame. Stream and Payload point
// into the decoded message.
type StreamFrame struct {
	Stream  string
	Seq     uint32
	Payload []byte
}

// Errors of ParseStreamFrame.
var (
	ErrStreamFrameShort   = errors.New("stream frame: shorter than its header")
	ErrStreamFrameVersion = errors.New("stream frame: unknown version")
	ErrStreamFrameID      = errors.New("stream frame: stream id is not canonical")
)

// ParseStreamFrame decodes a binary stream frame. The stream id must be in
// canonical form.
func ParseStreamFrame(b []byte) (StreamFrame, error) {
	if len(b) < 2 {
		return StreamFrame{}, ErrStreamFrameShort
	}
	if b[0] != StreamFrameVersion {
		return StreamFrame{}, ErrStreamFrameVersion
	}
	n := int(b[1])
	if n == 0 || n > MaxStreamIDLength {
		return StreamFrame{}, ErrStreamFrameID
	}
	if len(b) < StreamFrameOverhead+n {
		return StreamFrame{}, ErrStreamFrameShort
	}
	id := string(b[2 : 2+n])
	if canon, _, err := CanonicalStream(id); err != nil || canon != id {
		return StreamFrame{}, ErrStreamFrameID
	}
	return StreamFrame{Stream: id, Seq: binary.BigEndian.Uint32(b[2+n:]), Payload: b[StreamFrameOverhead+n:]}, nil
}

// AppendStreamFrame appends a binary stream frame to dst. stream must be a
// canonical stream id (it is not checked here; ParseStreamFrame checks it).
func AppendStreamFrame(dst []byte, stream string, seq uint32, payload []byte) []byte {
	dst = append(dst, StreamFrameVersion, byte(len(stream)))
	dst = append(dst, stream...)
	dst = binary.BigEndian.AppendUint32(dst, seq)
	return append(dst, payload...)
}
