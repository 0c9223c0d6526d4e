package hub

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// Real node messages, as the relay sends them.
var nodeMsgSeeds = []string{
	`{"kind":"rpc.call","from":"n1","call":"n1/17","device":"d1","method":"files.read","params":{"path":"/a","n":[1,2.5,true,null]},"caller":{"userId":"u1","deviceId":"phone"},"timeoutMs":29950}`,
	`{"kind":"rpc.list","from":"n1","call":"n1/18","device":"d1","caller":{"userId":"u1","appId":"app"},"timeoutMs":1}`,
	`{"kind":"rpc.cancel","from":"n1","call":"n1/17"}`,
	`{"kind":"rpc.progress","call":"n1/17","data":{"pct":50}}`,
	`{"kind":"rpc.result","call":"n1/17","result":{"ok":true,"s":"x\"y"}}`,
	`{"kind":"rpc.result","call":"n1/17","result":"\u003cb\u003e"}`,
	`{"kind":"rpc.result","call":"n1/17","error":{"code":"timeout","message":"the call timed out","retryable":true}}`,
	`{"kind":"rpc.result","call":"n1/17","error":{"code":"bad","message":"m","retryable":false,"retryAfterMs":5,"details":{"a":1}}}`,
	`{"kind":"rpc.result","call":"n1/17","offline":true}`,
	`{"kind":"device.replaced","call":"-","device":"d\u00e9","gen":42}`,
	` { "kind" : "rpc.result" , "call" : "c" , "result" : [ 1 , 2 ] } `,
	`{"kind":"rpc.result","call":"c","result":null}`,
	`{"kind":"rpc.result","call":"c","Kind":"x"}`,
	`{"kind":"rpc.result","call":"c","call":"d"}`,
	`{"kind":"rpc.call","call":"c","caller":{"userId":"a","appId":"x"},"caller":{"userId":"b"}}`,
	`{"kind":"rpc.call","call":"c","caller":null,"timeoutMs":-3,"gen":18446744073709551615}`,
	`{"kind":"rpc.call","call":"c","offline":false,"extra":{}}`,
	`{"kind":"\u00e9","call":"é\u2028"}`,
	`{"kind":"rpc.call","call":"c","timeoutMs":1.5}`,
	"{\"kind\":\"rpc.call\",\"call\":\"\xff\"}",
}

// FuzzDecodeNodeMsg: whatever decodeNodeMsg accepts, encoding/json reads
// the same way, and unmarshalNodeMsg always agrees with encoding/json.
func FuzzDecodeNodeMsg(f *testing.F) {
	for _, s := range nodeMsgSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var want nodeMsg
		wantErr := json.Unmarshal(raw, &want)
		var fast nodeMsg
		if decodeNodeMsg(raw, &fast) {
			if wantErr != nil {
				t.Fatalf("fast path accepted %q, encoding/json: %v", raw, wantErr)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("fast path read %q as %+v, encoding/json as %+v", raw, fast, want)
			}
		}
		var got nodeMsg
		err := unmarshalNodeMsg(raw, &got)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("unmarshalNodeMsg(%q): %v, encoding/json: %v", raw, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("unmarshalNodeMsg(%q) = %+v, encoding/json %+v", raw, got, want)
		}
	})
}

// FuzzMarshalNodeMsg: marshalNodeMsg's JSON reads back (with encoding/json)
// as what encoding/json's own JSON of the message reads back as.
func FuzzMarshalNodeMsg(f *testing.F) {
	f.Add("rpc.call", "n1", "n1/17", "d1", "files.read", []byte(`{"path":"/a"}`), "u1", "phone", "", int64(29950), []byte(nil), "", "", false, uint64(0))
	f.Add("rpc.result", "", "n1/17", "", "", []byte(nil), "", "", "", int64(0), []byte(`{"ok":true}`), "", "", false, uint64(0))
	f.Add("rpc.result", "", "n1/17", "", "", []byte(nil), "", "", "", int64(0), []byte(nil), "timeout", "the call <timed> out", false, uint64(0))
	f.Add("rpc.result", "", "n1/17", "", "", []byte(nil), "", "", "", int64(0), []byte(nil), "", "", true, uint64(0))
	f.Add("device.replaced", "", "-", "dé\u2028", "", []byte(" [1, \"<\"] "), "", "", "", int64(-1), []byte("nul"), "", "", false, uint64(1<<63))
	f.Add("k\"", "\xff", "c", "", "", []byte("{\"a\":\"\xff\"}"), "u", "", "a&b", int64(0), []byte(`null`), "c", "m", false, uint64(7))
	f.Fuzz(func(t *testing.T, kind, from, call, device, method string, params []byte, userID, deviceID, appID string,
		timeout int64, result []byte, code, message string, offline bool, gen uint64) {
		m := &nodeMsg{Kind: kind, From: from, Call: call, Device: device, Method: method, Params: params,
			TimeoutMs: timeout, Result: result, Offline: offline, Gen: gen, Data: params}
		if userID != "" || deviceID != "" || appID != "" {
			m.Caller = &protocol.Caller{UserID: userID, DeviceID: deviceID, AppID: appID}
		}
		if code != "" {
			m.Error = &protocol.Error{Code: protocol.Code(code), Message: message, Retryable: offline, RetryAfterMs: timeout}
		}
		want, wantErr := json.Marshal(m)
		got, err := marshalNodeMsg(m)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("marshalNodeMsg: %v, encoding/json: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if _, fast := appendNodeMsg(nil, m); fast && len(got) > nodeMsgSize(m) {
			t.Fatalf("marshalNodeMsg wrote %d bytes, over nodeMsgSize's bound %d", len(got), nodeMsgSize(m))
		}
		if !json.Valid(got) {
			t.Fatalf("marshalNodeMsg wrote invalid JSON %q", got)
		}
		var a, b nodeMsg
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		compactRaw(t, &a)
		compactRaw(t, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("marshalNodeMsg wrote %s, reading as %+v; encoding/json %s, reading as %+v", got, a, want, b)
		}
		// What the relay sends, the fast path reads back.
		if _, ok := appendNodeMsg(nil, m); ok {
			var c nodeMsg
			if m.Error == nil && !hasNull(m) && !decodeNodeMsg(got, &c) {
				t.Fatalf("decodeNodeMsg declined %s, marshalNodeMsg's own output", got)
			}
		}
	})
}

// hasNull reports a raw value that is JSON null (the fast path declines it).
func hasNull(m *nodeMsg) bool {
	for _, v := range []json.RawMessage{m.Params, m.Data, m.Result} {
		if len(v) > 0 && v[0] == 'n' {
			return true
		}
	}
	return false
}

// compactRaw compacts m's raw values, which encoding/json compacts and
// HTML-escapes when it writes them, and marshalNodeMsg copies verbatim.
func compactRaw(t *testing.T, m *nodeMsg) {
	t.Helper()
	for _, v := range []*json.RawMessage{&m.Params, &m.Data, &m.Result} {
		if len(*v) == 0 {
			continue
		}
		var x any
		if err := json.Unmarshal(*v, &x); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		*v = b
	}
}

// TestNodeMsgRoundTrip: the relay's messages go through the fast paths
// both ways, unchanged.
func TestNodeMsgRoundTrip(t *testing.T) {
	msgs := []*nodeMsg{
		{Kind: nodeCall, From: "n1", Call: "n1/17", Device: "d1", Method: "files.read", Params: json.RawMessage(`{"path":"/a"}`),
			Caller: &protocol.Caller{UserID: "u1", DeviceID: "phone", AppID: "a"}, TimeoutMs: 29950},
		{Kind: nodeList, From: "n1", Call: "n1/18", Device: "d1", Caller: &protocol.Caller{UserID: "u1"}, TimeoutMs: 5},
		{Kind: nodeCancel, From: "n1", Call: "n1/17"},
		{Kind: nodeProgress, Call: "n1/17", Data: json.RawMessage(`{"pct":50}`)},
		{Kind: nodeResult, Call: "n1/17", Result: json.RawMessage(`[1,"two",{"three":3}]`)},
		{Kind: nodeResult, Call: "n1/17", Offline: true},
		{Kind: nodeReplaced, Call: "-", Device: "d1", Gen: 42},
	}
	for _, m := range msgs {
		b, ok := appendNodeMsg(nil, m)
		if !ok {
			t.Fatalf("appendNodeMsg declined %+v", m)
		}
		want, _ := json.Marshal(m)
		if !bytes.Equal(b, want) {
			t.Errorf("appendNodeMsg wrote %s, encoding/json %s", b, want)
		}
		var got nodeMsg
		if !decodeNodeMsg(b, &got) {
			t.Fatalf("decodeNodeMsg declined %s", b)
		}
		if !reflect.DeepEqual(&got, m) {
			t.Errorf("decoded %s as %+v, want %+v", b, got, *m)
		}
	}
	// An error result goes through encoding/json on the way in.
	m := &nodeMsg{Kind: nodeResult, Call: "c", Error: &protocol.Error{Code: protocol.CodeTimeout, Message: "timed out", Retryable: true}}
	b, err := marshalNodeMsg(m)
	if err != nil {
		t.Fatal(err)
	}
	var got nodeMsg
	if err := unmarshalNodeMsg(b, &got); err != nil || !reflect.DeepEqual(&got, m) {
		t.Fatalf("error result %s read as %+v, %v", b, got, err)
	}
}

func BenchmarkNodeMsgCodec(b *testing.B) {
	m := &nodeMsg{Kind: nodeCall, From: "n1", Call: "n1/17", Device: "d1", Method: "files.read", Params: json.RawMessage(`{"path":"/a","n":12}`),
		Caller: &protocol.Caller{UserID: "u1", DeviceID: "phone"}, TimeoutMs: 29950}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, _ := marshalNodeMsg(m)
			var got nodeMsg
			_ = unmarshalNodeMsg(raw, &got)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			raw, _ := json.Marshal(m)
			var got nodeMsg
			_ = json.Unmarshal(raw, &got)
		}
	})
}
