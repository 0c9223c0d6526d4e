package protocol

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/junctionhq/junction/internal/jsonscan"
)

// Members of a frame, as bits, to refuse duplicates on the fast path.
const (
	memType = 1 << iota
	memID
	memMethod
	memParams
	memIdem
	memMeta
	memOK
	memResult
	memError
	memEvent
	memTopic
	memEpoch
	memOffset
	memData
)

// decodeFast decodes the frames that every client and the server itself
// write (members spelled exactly, strings without escapes, no null, no
// duplicate member) without reflection, into f. It reports false for
// anything else, and the caller decodes with encoding/json instead: the
// result is the same either way. b is valid UTF-8 with no surrounding
// space. The raw members share one copy of b, capped so that an append to
// one cannot overwrite another.
func decodeFast(b []byte, f *Frame) bool {
	var buf []byte // the copy of b the raw members alias, made on first use
	raw := func(start, end int) json.RawMessage {
		if buf == nil {
			buf = append([]byte(nil), b...)
		}
		return buf[start:end:end]
	}
	seen := 0
	end, ok := jsonscan.Object(b, 0, func(key []byte, v int) (int, bool) {
		var bit int
		switch string(key) {
		case "type":
			bit = memType
		case "id":
			bit = memID
		case "method":
			bit = memMethod
		case "params":
			bit = memParams
		case "idem":
			bit = memIdem
		case "meta":
			bit = memMeta
		case "ok":
			bit = memOK
		case "result":
			bit = memResult
		case "error":
			bit = memError
		case "event":
			bit = memEvent
		case "topic":
			bit = memTopic
		case "epoch":
			bit = memEpoch
		case "offset":
			bit = memOffset
		case "data":
			bit = memData
		default:
			return 0, false // encoding/json matches keys case-insensitively
		}
		if seen&bit != 0 || v >= len(b) || b[v] == 'n' {
			return 0, false // a duplicate merges, null leaves values as they are
		}
		seen |= bit
		switch bit {
		case memType, memID, memMethod, memIdem, memEvent, memTopic, memEpoch:
			s, end, ok := jsonscan.SimpleString(b, v)
			if !ok {
				return 0, false
			}
			switch bit {
			case memType:
				f.Type = frameType(s)
			case memID:
				f.ID = string(s)
			case memMethod:
				f.Method = string(s)
			case memIdem:
				f.Idem = string(s)
			case memEvent:
				f.Event = string(s)
			case memTopic:
				f.Topic = string(s)
			case memEpoch:
				f.Epoch = string(s)
			}
			return end, true
		case memOK:
			switch {
			case len(b)-v >= 4 && string(b[v:v+4]) == "true":
				f.OK = true
				return v + 4, true
			case len(b)-v >= 5 && string(b[v:v+5]) == "false":
				f.OK = false
				return v + 5, true
			}
			return 0, false
		case memOffset:
			n, end, ok := jsonscan.Uint(b, v)
			if !ok {
				return 0, false
			}
			f.Offset = uint64(n)
			return end, true
		case memMeta:
			m, end, ok := decodeMeta(b, v)
			if !ok {
				return 0, false
			}
			f.Meta = m
			return end, true
		case memError:
			end, ok := jsonscan.Value(b, v)
			if !ok || b[v] != '{' {
				return 0, false
			}
			var e Error
			if json.Unmarshal(b[v:end], &e) != nil {
				return 0, false
			}
			f.Error = &e
			return end, true
		default: // params, result, data
			end, ok := jsonscan.Value(b, v)
			if !ok {
				return 0, false
			}
			switch bit {
			case memParams:
				f.Params = raw(v, end)
			case memResult:
				f.Result = raw(v, end)
			case memData:
				f.Data = raw(v, end)
			}
			return end, true
		}
	})
	return ok && end == len(b)
}

// frameType returns the frame type constants without allocating.
func frameType(s []byte) string {
	switch string(s) {
	case TypeRequest:
		return TypeRequest
	case TypeResponse:
		return TypeResponse
	case TypeEvent:
		return TypeEvent
	}
	return string(s)
}

// decodeMeta decodes {"caller":{"userId":...,"deviceId":...,"appId":...}}
// as the server writes it.
func decodeMeta(b []byte, i int) (*Meta, int, bool) {
	m := &Meta{}
	seenCaller := false
	end, ok := jsonscan.Object(b, i, func(key []byte, v int) (int, bool) {
		if string(key) != "caller" || seenCaller || v >= len(b) || b[v] != '{' {
			return 0, false
		}
		seenCaller = true
		c := &Caller{}
		seen := 0
		end, ok := jsonscan.Object(b, v, func(key []byte, v int) (int, bool) {
			var dst *string
			var bit int
			switch string(key) {
			case "userId":
				dst, bit = &c.UserID, 1
			case "deviceId":
				dst, bit = &c.DeviceID, 2
			case "appId":
				dst, bit = &c.AppID, 4
			default:
				return 0, false
			}
			s, end, ok := jsonscan.SimpleString(b, v)
			if !ok || seen&bit != 0 {
				return 0, false
			}
			seen |= bit
			*dst = string(s)
			return end, true
		})
		m.Caller = c
		return end, ok
	})
	return m, end, ok
}

// ScanResult reads a successful response, {"type":"res","id":...,
// "ok":true,"result":...} with its members in any order, without
// allocating: id and result alias b (result is nil when absent). It
// reports false for anything else (another frame, an error, another
// member, an escaped id, anything Decode refuses), which Decode then
// reads; what it accepts, Decode reads as the same response
// (FuzzScanResult). It is the relay's path for the answers of the devices
// it calls.
func ScanResult(b []byte) (id []byte, result json.RawMessage, ok bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, nil, false
	}
	seen := 0
	end, ok := jsonscan.Object(b, 0, func(key []byte, v int) (int, bool) {
		var bit int
		switch string(key) {
		case "type":
			bit = memType
		case "id":
			bit = memID
		case "ok":
			bit = memOK
		case "result":
			bit = memResult
		default:
			return 0, false
		}
		if seen&bit != 0 {
			return 0, false
		}
		seen |= bit
		switch bit {
		case memType:
			s, end, ok := jsonscan.SimpleString(b, v)
			return end, ok && string(s) == TypeResponse
		case memID:
			s, end, ok := jsonscan.SimpleString(b, v)
			id = s
			return end, ok
		case memOK:
			return v + 4, len(b)-v >= 4 && string(b[v:v+4]) == "true"
		default:
			end, ok := jsonscan.Value(b, v)
			if !ok {
				return 0, false
			}
			result = b[v:end:end]
			return end, true
		}
	})
	if !ok || end != len(b) || seen&(memType|memID|memOK) != memType|memID|memOK ||
		len(id) == 0 || len(id) > MaxIDLength || // checkID's
		!utf8.Valid(b) { // last: other frames are refused at their first member
		return nil, nil, false
	}
	return id, result, true
}

// ScanRequest reads a request, {"type":"req","id":...,"method":...,
// "params":{...}} with its members in any order and params optional,
// without allocating: id, method and params alias b. It reports false for
// anything else (another frame, "idem", "meta", escaped strings, null
// params, anything Decode refuses), which Decode then reads; what it
// accepts, Decode reads as the same request (FuzzScanRequest). It is the
// read loop's path for the requests a method starts in place (rpc.call).
func ScanRequest(b []byte) (id, method []byte, params json.RawMessage, ok bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, nil, nil, false
	}
	seen := 0
	end, ok := jsonscan.Object(b, 0, func(key []byte, v int) (int, bool) {
		var bit int
		switch string(key) {
		case "type":
			bit = memType
		case "id":
			bit = memID
		case "method":
			bit = memMethod
		case "params":
			bit = memParams
		default:
			return 0, false
		}
		if seen&bit != 0 {
			return 0, false
		}
		seen |= bit
		if bit == memParams {
			if v >= len(b) || b[v] != '{' {
				return 0, false
			}
			end, ok := jsonscan.Value(b, v)
			if !ok {
				return 0, false
			}
			params = b[v:end:end]
			return end, true
		}
		s, end, ok := jsonscan.SimpleString(b, v)
		switch bit {
		case memType:
			ok = ok && string(s) == TypeRequest
		case memID:
			id = s
		default:
			method = s
		}
		return end, ok
	})
	if !ok || end != len(b) || seen&(memType|memID|memMethod) != memType|memID|memMethod ||
		len(id) == 0 || len(id) > MaxIDLength || len(method) == 0 || len(method) > MaxMethodLength || // validate's
		!utf8.Valid(b) { // last: other frames are refused at their first member
		return nil, nil, nil, false
	}
	return id, method, params, true
}
