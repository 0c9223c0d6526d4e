package protocol

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on the identifiers inside a frame.
const (
	MaxIDLength     = 128
	MaxMethodLength = 128
	MaxIdemLength   = 256
	MaxTopicLength  = 512
)

// Frame is one protocol frame: a request, a response or an event. Only the
// members of its Type are meaningful; the encoder writes only those.
//
// Params, Result and Data hold compact JSON (no raw newline): the decoder
// guarantees it for frames it decodes, and callers building frames must too
// (see Compact).
type Frame struct {
	Type string `json:"type"`

	// Request and response.
	ID string `json:"id,omitempty"`

	// Request.
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Idem   string          `json:"idem,omitempty"`
	Meta   *Meta           `json:"meta,omitempty"`

	// Response.
	OK     bool            `json:"ok,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *Error          `json:"error,omitempty"`

	// Event.
	Event string `json:"event,omitempty"`
	// Name is the event name of a publication (channel.message) when it is
	// not the default, "message" (see ValidatePublicationEvent).
	Name   string          `json:"name,omitempty"`
	Topic  string          `json:"topic,omitempty"`
	Epoch  string          `json:"epoch,omitempty"`
	Offset uint64          `json:"offset,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Decode parses one frame and checks its shape. It returns an *Error with
// CodeInvalidFrame describing the first problem found. The returned frame does
// not alias b.
func Decode(b []byte) (*Frame, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, Errorf(CodeInvalidFrame, "a frame must be a JSON object")
	}
	if !utf8.Valid(b) {
		// Text frames must be UTF-8; relaying invalid bytes would make
		// browsers drop the connection of whoever receives them.
		return nil, Errorf(CodeInvalidFrame, "a frame must be valid UTF-8")
	}
	f := new(Frame)
	if !decodeFast(b, f) {
		*f = Frame{}
		if err := json.Unmarshal(b, f); err != nil {
			return nil, Errorf(CodeInvalidFrame, "malformed frame: %s", jsonProblem(err))
		}
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return f, nil
}

// ProbeID extracts the "id" member of a request that failed to decode, so
// that the error response can still be correlated. It returns "" when there is
// no usable id.
func ProbeID(b []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return ""
	}
	if s, ok := probe.ID.(string); ok && len(s) <= MaxIDLength {
		return s
	}
	return ""
}

func (f *Frame) validate() error {
	switch f.Type {
	case TypeRequest:
		if err := checkID(f.ID); err != nil {
			return err
		}
		if f.Method == "" {
			return Errorf(CodeInvalidFrame, "a request needs a method")
		}
		if len(f.Method) > MaxMethodLength {
			return Errorf(CodeInvalidFrame, "method is longer than %d bytes", MaxMethodLength)
		}
		if len(f.Idem) > MaxIdemLength {
			return Errorf(CodeInvalidFrame, "idem is longer than %d bytes", MaxIdemLength)
		}
		if len(f.Params) > 0 && f.Params[0] != '{' && !isNull(f.Params) {
			return Errorf(CodeInvalidFrame, "params must be an object")
		}
	case TypeResponse:
		if err := checkID(f.ID); err != nil {
			return err
		}
		if !f.OK && (f.Error == nil || f.Error.Code == "") {
			return Errorf(CodeInvalidFrame, "a failed response needs error.code")
		}
		if f.OK && f.Error != nil {
			return Errorf(CodeInvalidFrame, "a successful response cannot carry an error")
		}
	case TypeEvent:
		if f.Event == "" {
			return Errorf(CodeInvalidFrame, "an event needs an event name")
		}
		if len(f.Topic) > MaxTopicLength {
			return Errorf(CodeInvalidFrame, "topic is longer than %d bytes", MaxTopicLength)
		}
	case "":
		return Errorf(CodeInvalidFrame, "missing type")
	default:
		return Errorf(CodeInvalidFrame, "unknown frame type %q", clip(f.Type))
	}
	return nil
}

func checkID(id string) error {
	if id == "" {
		return Errorf(CodeInvalidFrame, "missing id")
	}
	if len(id) > MaxIDLength {
		return Errorf(CodeInvalidFrame, "id is longer than %d bytes", MaxIDLength)
	}
	return nil
}

func isNull(b []byte) bool { return string(b) == "null" }

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// jsonProblem turns a decoding error into a message that names the offending
// member without echoing large parts of the input.
func jsonProblem(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return "invalid JSON at byte " + strconv.FormatInt(e.Offset, 10)
	case *json.UnmarshalTypeError:
		if e.Field != "" {
			return e.Field + " has the wrong type (got " + e.Value + ", want " + e.Type.String() + ")"
		}
		return "wrong type (got " + e.Value + ")"
	}
	return "invalid JSON"
}

// Split calls fn for every frame in a WebSocket text message: the message
// holds one frame or several separated by '\n'. Empty lines are skipped. The
// slices passed to fn alias msg.
func Split(msg []byte, fn func(frame []byte)) {
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		var line []byte
		if i < 0 {
			line, msg = msg, nil
		} else {
			line, msg = msg[:i], msg[i+1:]
		}
		if len(bytes.TrimSpace(line)) > 0 {
			fn(line)
		}
	}
}

// Compact returns raw as compact JSON (no insignificant whitespace, so no raw
// newline), or an error when raw is not valid UTF-8 JSON.
func Compact(raw []byte) (json.RawMessage, error) {
	if !utf8.Valid(raw) {
		return nil, Errorf(CodeBadRequest, "data must be valid UTF-8")
	}
	var buf bytes.Buffer
	buf.Grow(len(raw))
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MarshalJSON encodes only the members that belong to the frame's type.
func (f *Frame) MarshalJSON() ([]byte, error) {
	return f.Append(nil)
}

// Append appends the frame's compact JSON encoding to dst.
func (f *Frame) Append(dst []byte) ([]byte, error) {
	switch f.Type {
	case TypeRequest:
		return AppendRequest(dst, f.ID, f.Method, f.Params, f.Idem, f.Meta)
	case TypeResponse:
		if f.OK {
			return AppendResult(dst, f.ID, f.Result), nil
		}
		return AppendError(dst, f.ID, f.Error)
	case TypeEvent:
		if f.Name != "" {
			return AppendPublication(dst, f.Topic, f.Epoch, f.Offset, f.Name, f.Data), nil
		}
		return AppendEvent(dst, f.Event, f.Topic, f.Epoch, f.Offset, f.Data), nil
	}
	return nil, Errorf(CodeInvalidFrame, "unknown frame type %q", clip(f.Type))
}

// AppendRequest appends a request frame. params must be compact JSON or nil.
func AppendRequest(dst []byte, id, method string, params json.RawMessage, idem string, meta *Meta) ([]byte, error) {
	dst = append(dst, `{"type":"req","id":`...)
	dst = AppendString(dst, id)
	dst = append(dst, `,"method":`...)
	dst = AppendString(dst, method)
	if len(params) > 0 {
		dst = append(dst, `,"params":`...)
		dst = append(dst, params...)
	}
	if idem != "" {
		dst = append(dst, `,"idem":`...)
		dst = AppendString(dst, idem)
	}
	if meta != nil {
		dst = append(dst, `,"meta":`...)
		if c := meta.Caller; c != nil && !htmlSpecial(c.UserID) && !htmlSpecial(c.DeviceID) && !htmlSpecial(c.AppID) {
			// What json.Marshal writes, without its reflection.
			dst = append(dst, `{"caller":{"userId":`...)
			dst = AppendString(dst, c.UserID)
			if c.DeviceID != "" {
				dst = append(dst, `,"deviceId":`...)
				dst = AppendString(dst, c.DeviceID)
			}
			if c.AppID != "" {
				dst = append(dst, `,"appId":`...)
				dst = AppendString(dst, c.AppID)
			}
			dst = append(dst, "}}"...)
		} else {
			// A copy is marshalled, so that meta and its caller do not
			// escape: a relayed request's are on its sender's stack.
			m := Meta{}
			if meta.Caller != nil {
				c := *meta.Caller
				m.Caller = &c
			}
			mb, err := json.Marshal(&m)
			if err != nil {
				return nil, err
			}
			dst = append(dst, mb...)
		}
	}
	return append(dst, '}'), nil
}

// htmlSpecial reports whether s holds a character json.Marshal escapes and
// AppendString does not.
func htmlSpecial(s string) bool {
	return strings.ContainsAny(s, "<>&")
}

// AppendResult appends a successful response. result must be compact JSON or
// nil (encoded as null).
func AppendResult(dst []byte, id string, result json.RawMessage) []byte {
	dst = append(dst, `{"type":"res","id":`...)
	dst = AppendString(dst, id)
	dst = append(dst, `,"ok":true,"result":`...)
	if len(result) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, result...)
	}
	return append(dst, '}')
}

// AppendError appends a failed response.
func AppendError(dst []byte, id string, e *Error) ([]byte, error) {
	if e == nil {
		e = AsError(nil)
	}
	eb, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	dst = append(dst, `{"type":"res","id":`...)
	dst = AppendString(dst, id)
	dst = append(dst, `,"ok":false,"error":`...)
	dst = append(dst, eb...)
	return append(dst, '}'), nil
}

// AppendEvent appends an event frame. topic is omitted when empty; the
// position (epoch and offset) is written only with a topic and a non-empty
// epoch. data must be compact JSON or nil (omitted).
func AppendEvent(dst []byte, event, topic, epoch string, offset uint64, data json.RawMessage) []byte {
	dst = append(dst, `{"type":"event","event":`...)
	dst = AppendString(dst, event)
	if topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = AppendString(dst, topic)
		if epoch != "" {
			dst = append(dst, `,"epoch":`...)
			dst = AppendString(dst, epoch)
			dst = append(dst, `,"offset":`...)
			dst = strconv.AppendUint(dst, offset, 10)
		}
	}
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

// AppendPublication appends the channel.message event of one publication.
// name is the publication's event name, written as the "name" member
// unless it is empty (the default, "message").
func AppendPublication(dst []byte, topic, epoch string, offset uint64, name string, data json.RawMessage) []byte {
	if name == "" {
		return AppendEvent(dst, EventChannelMessage, topic, epoch, offset, data)
	}
	dst = append(dst, `{"type":"event","event":"`+EventChannelMessage+`","name":`...)
	dst = AppendString(dst, name)
	if topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = AppendString(dst, topic)
		if epoch != "" {
			dst = append(dst, `,"epoch":`...)
			dst = AppendString(dst, epoch)
			dst = append(dst, `,"offset":`...)
			dst = strconv.AppendUint(dst, offset, 10)
		}
	}
	if len(data) > 0 {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 is replaced by
// U+FFFD, as encoding/json does.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript parsers.
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
