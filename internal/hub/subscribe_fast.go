package hub

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/junctionhq/junction/internal/jsonscan"
)

// decodeFast implements fastParams for the shape a client sends to
// subscribe without a resume position: {"topic": "..."}, the topic spelled
// exactly, once, without escapes. Anything else (since, other keys, escapes)
// goes to DecodeParams. The strict decoder (a json.Decoder and reflection)
// was ~5 % of the server's CPU in connect-sub (BENCHMARKS.md, "Connect
// pass").
func (p *subscribeParams) decodeFast(raw json.RawMessage) bool {
	i := jsonscan.Space(raw, 0)
	if i >= len(raw) || raw[i] != '{' || !utf8.Valid(raw) { // encoding/json replaces invalid UTF-8
		return false
	}
	seen := false
	end, ok := jsonscan.Object(raw, i, func(key []byte, v int) (int, bool) {
		if seen || string(key) != "topic" {
			return 0, false
		}
		seen = true
		s, end, ok := jsonscan.SimpleString(raw, v)
		p.Topic = string(s)
		return end, ok
	})
	return ok && seen && jsonscan.Space(raw, end) == len(raw)
}
