package hub

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/protocol"
)

// The JSON of node messages (rpc_node.go) without reflection: every
// forwarded call is one message each way, encoded on one node and decoded
// on the other. The wire format is the one encoding/json gives nodeMsg (a
// node of an older version reads it), and the fast paths decline what they
// do not handle to encoding/json (rpc_codec_test.go fuzzes both against
// it).

// marshalNodeMsg returns m's JSON.
func marshalNodeMsg(m *nodeMsg) ([]byte, error) {
	if b, ok := appendNodeMsg(make([]byte, 0, nodeMsgSize(m)), m); ok {
		return b, nil
	}
	return json.Marshal(m)
}

// nodeMsgSize is an upper bound of appendNodeMsg's output for m (keys,
// quotes and numbers take less than 320 bytes together): one allocation,
// no growth (a growth's allocation is the deepest call of a forwarded
// call's goroutine, and where its stack would grow).
func nodeMsgSize(m *nodeMsg) int {
	n := 320 + len(m.Kind) + len(m.From) + len(m.Call) + len(m.Device) + len(m.Method) +
		len(m.Params) + len(m.Data) + len(m.Result)
	if m.Caller != nil {
		n += len(m.Caller.UserID) + len(m.Caller.DeviceID) + len(m.Caller.AppID)
	}
	if m.Error != nil {
		n += len(m.Error.Code) + len(m.Error.Message)
	}
	return n
}

// appendNodeMsg appends m's JSON to dst: the fields of nodeMsg in order,
// empty ones left out as their omitempty tags say. ok is false when a
// string needs escaping, a raw value is not plain valid JSON, or the error
// has details: encoding/json then writes it.
func appendNodeMsg(dst []byte, m *nodeMsg) ([]byte, bool) {
	ok := true
	str := func(key, v string, omitEmpty bool) {
		if !ok || (omitEmpty && v == "") {
			return
		}
		dst = append(dst, key...)
		dst, ok = appendSimpleString(dst, v)
	}
	raw := func(key string, v json.RawMessage) {
		if !ok || len(v) == 0 {
			return
		}
		if end, valid := jsonscan.Value(v, 0); !valid || end != len(v) || !utf8.Valid(v) {
			ok = false
			return
		}
		dst = append(dst, key...)
		dst = append(dst, v...)
	}
	str(`{"kind":`, m.Kind, false)
	str(`,"from":`, m.From, true)
	str(`,"call":`, m.Call, false)
	str(`,"device":`, m.Device, true)
	str(`,"method":`, m.Method, true)
	raw(`,"params":`, m.Params)
	if ok && m.Caller != nil {
		str(`,"caller":{"userId":`, m.Caller.UserID, false)
		str(`,"deviceId":`, m.Caller.DeviceID, true)
		str(`,"appId":`, m.Caller.AppID, true)
		dst = append(dst, '}')
	}
	if m.TimeoutMs > fastNumMax || m.TimeoutMs < -fastNumMax || m.Gen > fastNumMax {
		return dst, false // beyond what jsonscan.Int and Uint read back
	}
	if m.TimeoutMs != 0 {
		dst = strconv.AppendInt(append(dst, `,"timeoutMs":`...), m.TimeoutMs, 10)
	}
	raw(`,"data":`, m.Data)
	raw(`,"result":`, m.Result)
	if ok && m.Error != nil {
		if m.Error.Details != nil {
			return dst, false
		}
		str(`,"error":{"code":`, string(m.Error.Code), false)
		str(`,"message":`, m.Error.Message, false)
		dst = strconv.AppendBool(append(dst, `,"retryable":`...), m.Error.Retryable)
		if m.Error.RetryAfterMs != 0 {
			dst = strconv.AppendInt(append(dst, `,"retryAfterMs":`...), m.Error.RetryAfterMs, 10)
		}
		dst = append(dst, '}')
	}
	if m.Offline {
		dst = append(dst, `,"offline":true`...)
	}
	if m.Gen != 0 {
		dst = strconv.AppendUint(append(dst, `,"gen":`...), m.Gen, 10)
	}
	return append(dst, '}'), ok
}

// fastNumMax bounds the numbers the fast paths write: jsonscan.Uint refuses
// some of the 19-digit ones, so that decodeNodeMsg would decline what
// appendNodeMsg wrote (FuzzMarshalNodeMsg).
const fastNumMax = 9_000_000_000_000_000_000

// appendSimpleString appends s quoted when it needs no escape (no quote,
// backslash, control character or character encoding/json escapes for
// HTML, and valid UTF-8); ok is false otherwise.
func appendSimpleString(dst []byte, s string) ([]byte, bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				return dst, false
			}
			i++
			continue
		}
		// Every byte is checked, also after a multi-byte character (a
		// quote after one went out unescaped: FuzzMarshalNodeMsg).
		r, size := utf8.DecodeRuneInString(s[i:])
		// U+2028 and U+2029 are escaped by encoding/json too.
		if r == utf8.RuneError && size <= 1 || r == '\u2028' || r == '\u2029' {
			return dst, false
		}
		i += size
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"'), true
}

// unmarshalNodeMsg decodes a node message into m (a zero nodeMsg).
func unmarshalNodeMsg(raw []byte, m *nodeMsg) error {
	if decodeNodeMsg(raw, m) {
		return nil
	}
	*m = nodeMsg{}
	return json.Unmarshal(raw, m)
}

// Bits of decodeNodeMsg's seen set, one per field: a key seen twice
// declines (encoding/json merges repeated objects).
const (
	seenKind = 1 << iota
	seenFrom
	seenCall
	seenDevice
	seenMethod
	seenParams
	seenCaller
	seenTimeout
	seenData
	seenResult
	seenError
	seenOffline
	seenGen
)

// decodeNodeMsg decodes what appendNodeMsg writes (and the same with other
// key orders or whitespace) into m, the raw values aliasing raw. It reports
// false, leaving m partly written, for anything else: unknown or repeated
// keys, strings with escapes, nulls, errors (rare: encoding/json reads
// them), numbers out of range.
func decodeNodeMsg(raw []byte, m *nodeMsg) bool {
	var seen uint32
	once := func(bit uint32) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	str := func(dst *string, v int) (int, bool) {
		s, end, ok := jsonscan.SimpleString(raw, v)
		if !ok || !utf8.Valid(s) {
			return 0, false
		}
		*dst = string(s)
		return end, true
	}
	rawValue := func(dst *json.RawMessage, v int) (int, bool) {
		if v >= len(raw) || raw[v] == 'n' {
			return 0, false
		}
		end, ok := jsonscan.Value(raw, v)
		if !ok {
			return 0, false
		}
		*dst = raw[v:end:end]
		return end, true
	}
	end, ok := jsonscan.Object(raw, jsonscan.Space(raw, 0), func(key []byte, v int) (int, bool) {
		switch string(key) {
		case "kind":
			if !once(seenKind) {
				return 0, false
			}
			if s, end, ok := jsonscan.SimpleString(raw, v); ok {
				if k, known := knownKind(s); known {
					m.Kind = k // no allocation
					return end, true
				}
			}
			return str(&m.Kind, v)
		case "from":
			return onceStr(once(seenFrom), str, &m.From, v)
		case "call":
			return onceStr(once(seenCall), str, &m.Call, v)
		case "device":
			return onceStr(once(seenDevice), str, &m.Device, v)
		case "method":
			return onceStr(once(seenMethod), str, &m.Method, v)
		case "params":
			if !once(seenParams) {
				return 0, false
			}
			return rawValue(&m.Params, v)
		case "data":
			if !once(seenData) {
				return 0, false
			}
			return rawValue(&m.Data, v)
		case "result":
			if !once(seenResult) {
				return 0, false
			}
			return rawValue(&m.Result, v)
		case "caller":
			if !once(seenCaller) {
				return 0, false
			}
			c := &protocol.Caller{}
			var cseen uint32
			end, ok := jsonscan.Object(raw, v, func(key []byte, v int) (int, bool) {
				var bit uint32
				var dst *string
				switch string(key) {
				case "userId":
					bit, dst = 1, &c.UserID
				case "deviceId":
					bit, dst = 2, &c.DeviceID
				case "appId":
					bit, dst = 4, &c.AppID
				default:
					return 0, false
				}
				if cseen&bit != 0 {
					return 0, false
				}
				cseen |= bit
				return str(dst, v)
			})
			if !ok {
				return 0, false
			}
			m.Caller = c
			return end, true
		case "timeoutMs":
			if !once(seenTimeout) {
				return 0, false
			}
			n, end, ok := jsonscan.Int(raw, v)
			if !ok {
				return 0, false
			}
			m.TimeoutMs = n
			return end, true
		case "gen":
			if !once(seenGen) {
				return 0, false
			}
			n, end, ok := jsonscan.Uint(raw, v)
			if !ok {
				return 0, false
			}
			m.Gen = uint64(n)
			return end, true
		case "offline":
			if !once(seenOffline) {
				return 0, false
			}
			switch {
			case hasLiteral(raw, v, "true"):
				m.Offline = true
				return v + 4, true
			case hasLiteral(raw, v, "false"):
				m.Offline = false
				return v + 5, true
			}
			return 0, false
		}
		return 0, false // "error", and keys encoding/json may match differently
	})
	return ok && jsonscan.Space(raw, end) == len(raw)
}

// knownKind returns the kind constant equal to s, if any.
func knownKind(s []byte) (string, bool) {
	for _, k := range [...]string{nodeCall, nodeResult, nodeProgress, nodeCancel, nodeList, nodeReplaced} {
		if string(s) == k {
			return k, true
		}
	}
	return "", false
}

func onceStr(first bool, str func(*string, int) (int, bool), dst *string, v int) (int, bool) {
	if !first {
		return 0, false
	}
	return str(dst, v)
}

// hasLiteral reports whether lit starts at b[i] and is followed by no
// other character of a literal.
func hasLiteral(b []byte, i int, lit string) bool {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return false
	}
	j := i + len(lit)
	return j == len(b) || !(b[j] >= 'a' && b[j] <= 'z' || b[j] >= 'A' && b[j] <= 'Z' || b[j] >= '0' && b[j] <= '9')
}
