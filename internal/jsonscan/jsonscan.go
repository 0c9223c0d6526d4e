// Package jsonscan reads the JSON of protocol frames and request params
// without reflection, for the hot paths (frame decoding, rpc.call params).
//
// It handles a strict, common subset and reports anything else as not
// handled (ok false): the caller then decodes with encoding/json, which
// gives the same result or the proper error. So a scanner function never
// has to produce an error message, only to never accept what encoding/json
// would read differently.
package jsonscan

// Space returns the index of the first byte at or after i that is not JSON
// whitespace.
func Space(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// SimpleString reads the string starting at b[i] (a '"') when it holds no
// escape sequence and no control character: its contents alias b. end is
// the index after the closing quote. ok is false for anything else (escapes
// need decoding; control characters are invalid).
func SimpleString(b []byte, i int) (s []byte, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// Uint reads a non-negative integer without sign, fraction or exponent
// starting at b[i]; ok is false for anything else, a leading zero followed
// by digits, or a value over 2^63-1.
func Uint(b []byte, i int) (n int64, end int, ok bool) {
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		if n > (1<<63-1-9)/10 {
			return 0, 0, false
		}
		n = n*10 + int64(b[j]-'0')
		j++
	}
	if j == i || (b[i] == '0' && j > i+1) {
		return 0, 0, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, 0, false
	}
	return n, j, true
}

// Int reads an integer like Uint, with an optional leading '-'.
func Int(b []byte, i int) (n int64, end int, ok bool) {
	if i < len(b) && b[i] == '-' {
		n, end, ok = Uint(b, i+1)
		return -n, end, ok
	}
	return Uint(b, i)
}

// maxDepth bounds the nesting Value accepts (encoding/json allows 10,000).
const maxDepth = 1000

// Value checks that a valid JSON value starts at b[i] and returns the index
// after it. ok is false for invalid JSON or nesting deeper than 1,000.
// Strings are checked for JSON escapes; UTF-8 validity is the caller's
// (protocol.Decode checks whole frames).
func Value(b []byte, i int) (end int, ok bool) {
	return value(b, i, 0)
}

func value(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '"':
		return str(b, i)
	case c == '{':
		if depth >= maxDepth {
			return 0, false
		}
		i = Space(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			end, ok := str(b, i)
			if !ok {
				return 0, false
			}
			i = Space(b, end)
			if i >= len(b) || b[i] != ':' {
				return 0, false
			}
			if i, ok = value(b, Space(b, i+1), depth+1); !ok {
				return 0, false
			}
			i = Space(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == '}' {
				return i + 1, true
			}
			if b[i] != ',' {
				return 0, false
			}
			i = Space(b, i+1)
		}
	case c == '[':
		if depth >= maxDepth {
			return 0, false
		}
		i = Space(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			var ok bool
			if i, ok = value(b, i, depth+1); !ok {
				return 0, false
			}
			i = Space(b, i)
			if i >= len(b) {
				return 0, false
			}
			if b[i] == ']' {
				return i + 1, true
			}
			if b[i] != ',' {
				return 0, false
			}
			i = Space(b, i+1)
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return number(b, i)
	}
	return 0, false
}

func literal(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, false
	}
	return i + len(lit), true
}

// str checks the string starting at b[i].
func str(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			j++
			if j >= len(b) {
				return 0, false
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-j < 5 {
					return 0, false
				}
				for _, h := range b[j+1 : j+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, false
					}
				}
				j += 4
			default:
				return 0, false
			}
		}
	}
	return 0, false
}

// number checks a JSON number starting at b[i].
func number(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return 0, false
		}
	}
	return i, true
}

// Object calls member for each member of the object starting at b[i], with
// the key (when it is a SimpleString) and the index where its value starts;
// member returns the index after the value. It returns the index after the
// object; ok is false when the object is malformed, a key is not simple, or
// member returns false.
func Object(b []byte, i int, member func(key []byte, v int) (end int, ok bool)) (end int, ok bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	i = Space(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		key, end, ok := SimpleString(b, i)
		if !ok {
			return 0, false
		}
		i = Space(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		if i, ok = member(key, Space(b, i+1)); !ok {
			return 0, false
		}
		i = Space(b, i)
		if i >= len(b) {
			return 0, false
		}
		if b[i] == '}' {
			return i + 1, true
		}
		if b[i] != ',' {
			return 0, false
		}
		i = Space(b, i+1)
	}
}
