package hub

import (
	"encoding/json"
	"testing"
)

var publishParamSeeds = []string{
	`{"topic":"public:bench","data":{"ts":1700000000000000000,"pad":"xx"}}`,
	` { "topic" : "room:1" , "data" : [1, 2, {"a" : "b c"}] } `,
	`{"data":"x","topic":"room:1"}`,
	`{"topic":"room:1","data":null}`,
	`{"topic":"room:1"}`,
	`{"data":1}`,
	`{"topic":"room:1","data":1,"data":2}`,
	`{"topic":"room:1","topic":"room:2","data":1}`,
	`{"Topic":"room:1","data":1}`,
	`{"topic":"room:\u0031","data":1}`,
	`{"topic":"room:1","data":"\ud800"}`,
	`{"topic":"room:1","data":1,"extra":true}`,
	`{"topic":"room:1","data":01}`,
	`{"topic":"room:1","data":{"a":}}`,
	`{"topic":"","data":1}`,
	`{"topic":"nocolon","data":1}`,
	`{"topic":1,"data":1}`,
	`{"topic":"room:1","data":1} {}`,
	"{\"topic\":\"room:1\",\"data\":\"\xff\"}",
	`{}`, `null`, ``, `[]`,
}

// TestPublishParamsFastMatchesSlow checks that the fast path of
// channel.publish params decodes exactly as the strict decoder, errors
// included.
func TestPublishParamsFastMatchesSlow(t *testing.T) {
	for _, s := range publishParamSeeds {
		checkPublishParams(t, []byte(s))
	}
	var p publishParams
	if !p.decodeFast(json.RawMessage(publishParamSeeds[0])) {
		t.Fatalf("the fast path declined the common shape %s", publishParamSeeds[0])
	}
}

func checkPublishParams(t *testing.T, raw []byte) { checkFastMatchesSlow[publishParams](t, raw) }

func FuzzPublishParamsFast(f *testing.F) {
	for _, s := range publishParamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkPublishParams(t, raw)
	})
}
