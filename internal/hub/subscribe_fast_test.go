package hub

import (
	"encoding/json"
	"testing"
)

var subscribeParamSeeds = []string{
	`{"topic":"public:room"}`,
	` { "topic" : "public:room" } `,
	`{"topic":"public:room","since":{"epoch":"e1","offset":3}}`,
	`{"since":{"epoch":"e1","offset":3},"topic":"public:room"}`,
	`{"topic":"public:r\u00f6om"}`,
	`{"topic":"public:röom"}`,
	`{"Topic":"public:room"}`,
	`{"topic":"public:room","topic":"public:other"}`,
	`{"topic":"bad topic"}`,
	`{"topic":""}`,
	`{"topic":1}`,
	`{"topic":null}`,
	`{"topic":"public:room","extra":true}`,
	`{"topic":"public:room"} {}`,
	`{"topic":"public:room"`,
	"{\"topic\":\"public:\xff\"}",
	`{}`, `null`, ``, `[]`,
}

// TestSubscribeParamsFastMatchesSlow checks that the fast path of
// channel.subscribe params decodes exactly as the strict decoder, errors
// included.
func TestSubscribeParamsFastMatchesSlow(t *testing.T) {
	var p subscribeParams
	if !p.decodeFast(json.RawMessage(`{"topic":"public:room"}`)) || p.Topic != "public:room" {
		t.Fatalf("the common shape did not take the fast path: %+v", p)
	}
	for _, s := range subscribeParamSeeds {
		checkSubscribeParams(t, []byte(s))
	}
}

func checkSubscribeParams(t *testing.T, raw []byte) { checkFastMatchesSlow[subscribeParams](t, raw) }

func FuzzSubscribeParamsFast(f *testing.F) {
	for _, s := range subscribeParamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkSubscribeParams(t, raw)
	})
}
