package client

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// TestAppendRPCCallMatchesMarshal checks the hand-written rpc.call request
// against the encoding through json.Marshal it replaced.
func TestAppendRPCCallMatchesMarshal(t *testing.T) {
	for _, tc := range []struct {
		name, device, method string
		params               json.RawMessage
		timeoutMs            int64
	}{
		{"plain", "mac-1", "files.read", json.RawMessage(`{"path":"/etc/hosts"}`), 10000},
		{"no params", "mac-1", "sys.x", nil, 1},
		{"escapes", "d\"\\\n\u2028é", "a.b", json.RawMessage(`{}`), 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p struct {
				Target struct {
					DeviceID string `json:"deviceId"`
				} `json:"target"`
				Method    string          `json:"method"`
				Params    json.RawMessage `json:"params,omitempty"`
				TimeoutMs int64           `json:"timeoutMs,omitempty"`
			}
			p.Target.DeviceID, p.Method, p.Params, p.TimeoutMs = tc.device, tc.method, tc.params, tc.timeoutMs
			body, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := protocol.AppendRequest(nil, "7", "rpc.call", body, "", nil)
			got := appendRPCCall(nil, "7", tc.device, tc.method, tc.params, tc.timeoutMs)
			if !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

var resultSeeds = []string{
	`{"a":1}`, `[1,2]`, `"x"`, `null`, `{"a":"<b>"}`, `{ "a" : 1 }`, `{"a":"x y"}`, `{"a":1,}`, `1e5`, `"\u2028"`, `{"é":1}`,
}

// TestEncodeResultMatchesMarshal checks that a json.RawMessage result is
// sent as json.Marshal would send it.
func TestEncodeResultMatchesMarshal(t *testing.T) {
	for _, s := range resultSeeds {
		checkEncodeResult(t, []byte(s))
	}
}

func checkEncodeResult(t *testing.T, b []byte) {
	t.Helper()
	got, gerr := encodeResult(json.RawMessage(b))
	want, werr := json.Marshal(json.RawMessage(b))
	if (gerr == nil) != (werr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("%q: got %q, %v; want %q, %v", b, got, gerr, want, werr)
	}
}

func FuzzEncodeResult(f *testing.F) {
	for _, s := range resultSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkEncodeResult(t, b) })
}

// TestAppendHeaderMatchesWriteHeader checks the frame header encoding
// against gobwas/ws.
func TestAppendHeaderMatchesWriteHeader(t *testing.T) {
	for _, h := range []ws.Header{
		{Fin: true, OpCode: ws.OpText, Length: 0, Masked: true, Mask: [4]byte{1, 2, 3, 4}},
		{Fin: true, OpCode: ws.OpText, Length: 125, Masked: true, Mask: [4]byte{9, 8, 7, 6}},
		{Fin: true, OpCode: ws.OpText, Length: 126, Masked: true},
		{Fin: false, OpCode: ws.OpBinary, Length: 0xffff, Rsv: ws.Rsv(true, false, true)},
		{Fin: true, OpCode: ws.OpClose, Length: 0x10000, Masked: true, Mask: [4]byte{0xff, 0, 0xff, 0}},
		{Fin: true, OpCode: ws.OpPong, Length: 1 << 40},
	} {
		var want bytes.Buffer
		if err := ws.WriteHeader(&want, h); err != nil {
			t.Fatal(err)
		}
		if got := appendHeader(nil, h); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%+v: got % x, want % x", h, got, want.Bytes())
		}
	}
}
