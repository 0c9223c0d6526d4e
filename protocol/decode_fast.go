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
		bit := memberBit(key)
		if bit == 0 || seen&bit != 0 || v >= len(b) || b[v] == 'n' {
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

// memberBit returns the bit of a frame member by its key, 0 for a key that
// names none exactly (encoding/json matches keys case-insensitively: the
// fast paths decline those).
func memberBit(key []byte) int {
	switch string(key) {
	case "type":
		return memType
	case "id":
		return memID
	case "method":
		return memMethod
	case "params":
		return memParams
	case "idem":
		return memIdem
	case "meta":
		return memMeta
	case "ok":
		return memOK
	case "result":
		return memResult
	case "error":
		return memError
	case "event":
		return memEvent
	case "topic":
		return memTopic
	case "epoch":
		return memEpoch
	case "offset":
		return memOffset
	case "data":
		return memData
	}
	return 0
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
	seen, ok := scanMembers(b, memType|memID|memOK|memResult, func(bit int, b []byte, v int) (int, bool) {
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
	if !ok || seen&(memType|memID|memOK) != memType|memID|memOK ||
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
// accepts, Decode reads as the same request (FuzzScanRequest). accept is
// asked about the method as soon as it is read: false ends the scan (ok
// false), so that a request for another method is read once, by Decode.
// It is the read loop's path for the requests a method starts in place
// (rpc.call).
func ScanRequest(b []byte, accept func(method []byte) bool) (id, method []byte, params json.RawMessage, ok bool) {
	seen, ok := scanMembers(b, memType|memID|memMethod|memParams, func(bit int, b []byte, v int) (int, bool) {
		if bit == memParams {
			if b[v] != '{' {
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
			ok = ok && accept(s)
		}
		return end, ok
	})
	if !ok || seen&(memType|memID|memMethod) != memType|memID|memMethod ||
		len(id) == 0 || len(id) > MaxIDLength || len(method) == 0 || len(method) > MaxMethodLength || // validate's
		!utf8.Valid(b) { // last: other frames are refused at their first member
		return nil, nil, nil, false
	}
	return id, method, params, true
}

// scanMembers reads the object b (surrounding space trimmed) whose members
// are all among the bits of allowed, each once, with member reading the
// value at b[v] and returning the index after it. It returns the members
// seen; ok is false for anything else. UTF-8 validity is the caller's.
func scanMembers(b []byte, allowed int, member func(bit int, b []byte, v int) (end int, ok bool)) (seen int, ok bool) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return 0, false
	}
	end, ok := jsonscan.Object(b, 0, func(key []byte, v int) (int, bool) {
		bit := memberBit(key)
		if bit&allowed == 0 || seen&bit != 0 || v >= len(b) {
			return 0, false
		}
		seen |= bit
		return member(bit, b, v)
	})
	return seen, ok && end == len(b)
}
