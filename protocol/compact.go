package protocol

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The compact channel protocol (docs/iot.md): every WebSocket text message
// is one JSON array [topic, event, payload], spoken on /ws/iot and on /ws
// with the subprotocol CompactSubprotocol. It shares the hub with protocol
// v1: the same topics, namespaces, rules, error codes and RPC relay.

// CompactSubprotocol selects the compact protocol on /ws.
const CompactSubprotocol = "junction.compact.v1"

// Events of the compact protocol on channel topics. Every other event a
// client sends on a channel topic is a publication with that event name.
const (
	CompactSubscribe    = "subscribe"    // client: join a topic; payload CompactSubscribeParams
	CompactSubscribed   = "subscribed"   // server: the reply; payload CompactSubscribedPayload
	CompactUnsubscribe  = "unsubscribe"  // client: leave a topic; payload {}
	CompactUnsubscribed = "unsubscribed" // server: the reply, or the server removed the subscription; payload {} or Unsubscribed
	CompactError        = "error"        // server: a message failed; payload CompactErrorPayload
	CompactSkipped      = "skipped"      // server: a publication too large for the connection; payload CompactSkippedPayload
	CompactSnapshot     = "snapshot"     // server: the namespace's snapshot, after subscribed
	CompactJoin         = "join"         // server: presence join; payload ClientInfo
	CompactLeave        = "leave"        // server: presence leave; payload ClientInfo
)

// Reserved topics of the compact protocol and their events.
const (
	// CompactRPCTopic carries the RPC relay: a device serving methods
	// registers them and receives calls on it.
	CompactRPCTopic = "$rpc"
	// CompactSysTopic carries the connection's own events: welcome,
	// token.expiring, server.shutdown.
	CompactSysTopic = "$sys"

	CompactRegister   = "register"   // client on $rpc: serve methods; payload RPCRegisterParams
	CompactRegistered = "registered" // server on $rpc: the reply; payload RPCRegisterParams (the methods)
	CompactCall       = "call"       // server on $rpc: a relayed call; payload CompactCall
	CompactResult     = "result"     // client on $rpc: a call's result; payload CompactResultPayload
	CompactCancel     = "cancel"     // server on $rpc: stop a call; payload RPCCancel
	CompactWelcome    = "welcome"    // server on $sys: the first message; payload CompactWelcomePayload
)

// MaxCompactEventLength bounds the event of a compact message.
const MaxCompactEventLength = 128

// CompactMessage is one decoded compact message.
type CompactMessage struct {
	Topic string
	Event string
	// Payload is compact JSON (never empty: an absent payload is {}).
	Payload json.RawMessage
}

// DecodeCompact parses one compact message: a JSON array of a topic
// (string, at most MaxTopicLength bytes), an event (non-empty string, at
// most MaxCompactEventLength bytes) and an optional payload (any JSON
// value; {} when absent). Anything else is an *Error with CodeInvalidFrame.
// When the array's first element is a string it is returned as the topic
// even with an error, so that the error can name it.
func DecodeCompact(b []byte) (CompactMessage, error) {
	var m CompactMessage
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		return m, Errorf(CodeInvalidFrame, "a message must be a JSON array [topic, event, payload]")
	}
	if !utf8.Valid(b) {
		return m, Errorf(CodeInvalidFrame, "a message must be valid UTF-8")
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil {
		return m, Errorf(CodeInvalidFrame, "malformed message: %s", jsonProblem(err))
	}
	if len(parts) > 0 {
		if json.Unmarshal(parts[0], &m.Topic) != nil || len(m.Topic) > MaxTopicLength {
			m.Topic = ""
		}
	}
	if len(parts) < 2 || len(parts) > 3 {
		return m, Errorf(CodeInvalidFrame, "a message must be an array of 2 or 3 elements [topic, event, payload], got %d", len(parts))
	}
	if m.Topic == "" {
		return m, Errorf(CodeInvalidFrame, "the topic must be a non-empty string of at most %d bytes", MaxTopicLength)
	}
	if json.Unmarshal(parts[1], &m.Event) != nil || m.Event == "" || len(m.Event) > MaxCompactEventLength {
		return m, Errorf(CodeInvalidFrame, "the event must be a non-empty string of at most %d bytes", MaxCompactEventLength)
	}
	m.Payload = json.RawMessage("{}")
	if len(parts) == 3 {
		p, err := Compact(parts[2])
		if err != nil {
			return m, Errorf(CodeInvalidFrame, "malformed payload")
		}
		m.Payload = p
	}
	return m, nil
}

// AppendCompact appends the compact message [topic, event, payload].
// payload must be compact JSON; nil is written as {}.
func AppendCompact(dst []byte, topic, event string, payload json.RawMessage) []byte {
	dst = append(dst, '[')
	dst = AppendString(dst, topic)
	dst = append(dst, ',')
	dst = AppendString(dst, event)
	dst = append(dst, ',')
	if len(payload) == 0 {
		dst = append(dst, "{}"...)
	} else {
		dst = append(dst, payload...)
	}
	return append(dst, ']')
}

// CompactSubscribeParams is the payload of subscribe.
type CompactSubscribeParams struct {
	// ID, when set, is echoed in subscribed (and in an error), so that a
	// client can match replies.
	ID string `json:"id,omitempty"`
	// Since resumes from a position the client already has, as
	// channel.subscribe's since.
	Since *StreamPosition `json:"since,omitempty"`
}

// CompactSubscribedPayload is the payload of subscribed: the request's id and the
// position the stream continues after.
type CompactSubscribedPayload struct {
	ID        string `json:"id,omitempty"`
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered bool   `json:"recovered"`
}

// CompactErrorPayload is the payload of error.
type CompactErrorPayload struct {
	// ID is the id of the subscribe or RPC message that failed, when it had one.
	ID           string         `json:"id,omitempty"`
	Code         Code           `json:"code"`
	Message      string         `json:"message"`
	RetryAfterMs int64          `json:"retryAfterMs,omitempty"`
	Details      map[string]any `json:"details,omitempty"`
}

// CompactSkippedPayload is the payload of skipped: the publication at
// Offset (or the snapshot, Offset 0) was not sent.
type CompactSkippedPayload struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch,omitempty"`
	// Event is the skipped publication's event name.
	Event string `json:"event,omitempty"`
	// Reason is "too_large": the message would exceed the connection's
	// frame limit (Bytes, over Limit).
	Reason string `json:"reason"`
	Bytes  int    `json:"bytes"`
	Limit  int    `json:"limit"`
}

// CompactCallPayload is the payload of a call on $rpc.
type CompactCallPayload struct {
	ID     string          `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
	Caller *Caller         `json:"caller,omitempty"`
}

// CompactResultPayload is the payload of a result on $rpc (a device's
// answer to a call). An error answer is CompactErrorPayload with the call's id.
type CompactResultPayload struct {
	ID     string          `json:"id"`
	Result json.RawMessage `json:"result,omitempty"`
}

// CompactWelcomePayload is the payload of welcome on $sys, the first message of a
// compact connection.
type CompactWelcomePayload struct {
	Protocol           string    `json:"protocol"`
	ConnID             string    `json:"connId"`
	Principal          Principal `json:"principal"`
	HeartbeatMs        int64     `json:"heartbeatMs"`
	HeartbeatTimeoutMs int64     `json:"heartbeatTimeoutMs"`
	MaxFrameBytes      int       `json:"maxFrameBytes"`
}
