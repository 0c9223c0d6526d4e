package web

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

var publishBodySeeds = []string{
	`{"data":{"ts":1700000000000000000,"pad":"xx"}}`,
	` { "data" : [1, 2, {"a" : "b c"}] } `,
	"{\"data\":{\n\t\"a\": 1\r\n}}",
	`{"data":"x"}`,
	`{"data":null}`,
	`{"data":1,"data":2}`,
	`{"Data":1}`,
	`{"data":"\ud800"}`,
	`{"data":1,"extra":true}`,
	`{"data":01}`,
	`{"data":{"a":}}`,
	`{"data":1} {}`,
	"{\"data\":\"\xff\"}",
	`{}`, `null`, ``, `[]`,
}

// TestPublishDataFastMatchesSlow checks that the REST publish body's fast
// path returns exactly what the strict decoder and protocol.Compact return,
// whenever it accepts a body.
func TestPublishDataFastMatchesSlow(t *testing.T) {
	for _, s := range publishBodySeeds {
		checkPublishData(t, []byte(s))
	}
	if _, ok := publishDataFast([]byte(publishBodySeeds[0])); !ok {
		t.Fatalf("the fast path declined the common shape %s", publishBodySeeds[0])
	}
}

func checkPublishData(t *testing.T, raw []byte) {
	t.Helper()
	got, ok := publishDataFast(bytes.Clone(raw))
	if !ok {
		return // the strict decoder decides
	}
	var body publishBody
	if err := hub.DecodeParams(json.RawMessage(raw), &body); err != nil {
		t.Fatalf("%q: the fast path accepted %s, the strict decoder failed: %v", raw, got, err)
	}
	want, err := protocol.Compact(body.Data)
	if err != nil {
		t.Fatalf("%q: the fast path accepted %s, Compact failed: %v", raw, got, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: got data %s, want %s", raw, got, want)
	}
}

func FuzzPublishDataFast(f *testing.F) {
	for _, s := range publishBodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkPublishData(t, raw)
	})
}

// TestAppendPublishResult checks the hand-encoded REST publish result
// against encoding/json.
func TestAppendPublishResult(t *testing.T) {
	for _, pos := range []hub.StreamPosition{{Epoch: "k3j9x", Offset: 0}, {Epoch: "e1", Offset: 1<<64 - 1}, {Epoch: "a\"b\\c\u00e9\n", Offset: 17}} {
		got := appendPublishResult(nil, pos)
		want, err := json.Marshal(protocol.PublishResult{Epoch: pos.Epoch, Offset: pos.Offset})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
}
