package hub

import (
	"encoding/json"
	"reflect"
	"testing"
)

var rpcCallParamSeeds = []string{
	`{"target":{"deviceId":"mac-1"},"method":"files.read","params":{"path":"/etc/hosts"},"timeoutMs":10000}`,
	` { "target" : { "deviceId" : "m" } , "method" : "a.b" } `,
	`{"target":{"deviceId":"m"},"method":"a.b","params":{},"timeoutMs":-5}`,
	`{"target":{"deviceId":"m"},"method":"a.b","params":null}`,
	`{"target":{"deviceId":"m"},"method":"a.b","params":[1]}`,
	`{"target":{"deviceId":"m"},"method":"a.b","timeoutMs":1.5}`,
	`{"target":{"deviceId":"m"},"method":"a.b","timeoutMs":"1"}`,
	`{"target":{"deviceId":"m"},"method":"a.b","timeoutMs":99999999999999999999}`,
	`{"target":{"deviceId":"m"},"Method":"a.b"}`,
	`{"target":{"deviceId":"m"},"method":"a.b","method":"c.d"}`,
	`{"target":{"deviceId":"m","x":1},"method":"a.b"}`,
	`{"target":{"deviceId":"m\u0041"},"method":"a.b"}`,
	`{"target":null,"method":"a.b"}`,
	`{"target":{},"method":"a.b"}`,
	`{"method":"a..b","target":{"deviceId":"m"}}`,
	`{"target":{"deviceId":"m"},"method":"a.b","extra":true}`,
	`{"target":{"deviceId":"m"},"method":"a.b"} {}`,
	`{}`, `null`, ``, `[]`,
}

// TestRPCCallParamsFastMatchesSlow checks that the fast path of rpc.call
// params decodes exactly as the strict decoder, errors included.
func TestRPCCallParamsFastMatchesSlow(t *testing.T) {
	for _, s := range rpcCallParamSeeds {
		checkRPCCallParams(t, []byte(s))
	}
}

func checkRPCCallParams(t *testing.T, raw []byte) { checkFastMatchesSlow[rpcCallParams](t, raw) }

// checkFastMatchesSlow checks that raw decodes into P through its fast path
// (decodeParamsInto) exactly as through the strict decoder, errors included.
// The fast-path tests and fuzz targets of every params type share it.
func checkFastMatchesSlow[P any](t *testing.T, raw []byte) {
	t.Helper()
	var got, want P
	gerr := decodeParamsInto(json.RawMessage(raw), &got)
	werr := DecodeParams(json.RawMessage(raw), &want)
	if !reflect.DeepEqual(gerr, werr) {
		t.Fatalf("%q: got error %v, want %v", raw, gerr, werr)
	}
	if gerr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: got %+v, want %+v", raw, got, want)
	}
}

func FuzzRPCCallParamsFast(f *testing.F) {
	for _, s := range rpcCallParamSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkRPCCallParams(t, raw)
	})
}
