package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string // substring of the error message; "" means success
		check   func(t *testing.T, f *Frame)
	}{
		{name: "request", in: `{"type":"req","id":"42","method":"sys.ping","params":{"a":1},"idem":"k1"}`,
			check: func(t *testing.T, f *Frame) {
				if f.ID != "42" || f.Method != "sys.ping" || f.Idem != "k1" || string(f.Params) != `{"a":1}` {
					t.Errorf("got %+v", f)
				}
			}},
		{name: "request without params", in: `{"type":"req","id":"1","method":"sys.ping"}`},
		{name: "response ok", in: `{"type":"res","id":"1","ok":true,"result":{"x":1}}`,
			check: func(t *testing.T, f *Frame) {
				if !f.OK || string(f.Result) != `{"x":1}` {
					t.Errorf("got %+v", f)
				}
			}},
		{name: "response error", in: `{"type":"res","id":"1","ok":false,"error":{"code":"forbidden","message":"no"}}`,
			check: func(t *testing.T, f *Frame) {
				if f.OK || f.Error.Code != CodeForbidden {
					t.Errorf("got %+v", f)
				}
			}},
		{name: "event", in: `{"type":"event","event":"channel.message","topic":"public:a","epoch":"e1","offset":17,"data":{"t":1}}`,
			check: func(t *testing.T, f *Frame) {
				if f.Event != "channel.message" || f.Topic != "public:a" || f.Epoch != "e1" || f.Offset != 17 {
					t.Errorf("got %+v", f)
				}
			}},
		{name: "not json", in: `hello`, wantErr: "must be a JSON object"},
		{name: "array", in: `[1,2]`, wantErr: "must be a JSON object"},
		{name: "truncated", in: `{"type":"req","id":"1"`, wantErr: "malformed frame"},
		{name: "missing type", in: `{"id":"1"}`, wantErr: "missing type"},
		{name: "unknown type", in: `{"type":"rpc"}`, wantErr: "unknown frame type"},
		{name: "request missing id", in: `{"type":"req","method":"a.b"}`, wantErr: "missing id"},
		{name: "request numeric id", in: `{"type":"req","id":42,"method":"a.b"}`, wantErr: "id has the wrong type"},
		{name: "request missing method", in: `{"type":"req","id":"1"}`, wantErr: "needs a method"},
		{name: "params not object", in: `{"type":"req","id":"1","method":"a.b","params":[1]}`, wantErr: "params must be an object"},
		{name: "id too long", in: `{"type":"req","id":"` + strings.Repeat("x", MaxIDLength+1) + `","method":"a.b"}`, wantErr: "id is longer"},
		{name: "failed response without error", in: `{"type":"res","id":"1","ok":false}`, wantErr: "needs error.code"},
		{name: "ok response with error", in: `{"type":"res","id":"1","ok":true,"error":{"code":"x"}}`, wantErr: "cannot carry an error"},
		{name: "event without name", in: `{"type":"event"}`, wantErr: "needs an event name"},
		{name: "invalid utf-8", in: "{\"type\":\"req\",\"id\":\"1\",\"method\":\"a.b\",\"params\":{\"x\":\"\xff\"}}", wantErr: "valid UTF-8"},
		{name: "type wrong type", in: `{"type":5}`, wantErr: "type has the wrong type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Decode([]byte(tt.in))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Decode: got error %v, want none", err)
				}
				if tt.check != nil {
					tt.check(t, f)
				}
				return
			}
			if err == nil {
				t.Fatalf("Decode: got %+v, want error containing %q", f, tt.wantErr)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeInvalidFrame {
				t.Fatalf("got error %v, want code %s", err, CodeInvalidFrame)
			}
			if !strings.Contains(pe.Message, tt.wantErr) {
				t.Errorf("got message %q, want it to contain %q", pe.Message, tt.wantErr)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one", `{"a":1}`, []string{`{"a":1}`}},
		{"two", "{\"a\":1}\n{\"b\":2}", []string{`{"a":1}`, `{"b":2}`}},
		{"trailing newline", "{\"a\":1}\n", []string{`{"a":1}`}},
		{"blank lines", "\n\n{\"a\":1}\n \n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			Split([]byte(tt.in), func(b []byte) { got = append(got, string(b)) })
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendRoundTrip(t *testing.T) {
	frames := []*Frame{
		{Type: TypeRequest, ID: "1", Method: "rpc.call", Params: json.RawMessage(`{"x":"y"}`), Idem: "k", Meta: &Meta{Caller: &Caller{UserID: "u", DeviceID: "d"}}},
		{Type: TypeResponse, ID: "2", OK: true, Result: json.RawMessage(`[1,2]`)},
		{Type: TypeResponse, ID: "3", Error: Errorf(CodeConflict, "version %d", 3).WithDetail("current", 3)},
		{Type: TypeEvent, Event: "channel.message", Topic: "session:a\"b", Epoch: "e", Offset: 9, Data: json.RawMessage(`{"t":"\n"}`)},
	}
	for _, f := range frames {
		b, err := f.Append(nil)
		if err != nil {
			t.Fatalf("Append(%+v): %v", f, err)
		}
		if strings.ContainsRune(string(b), '\n') {
			t.Errorf("encoded frame contains a raw newline: %s", b)
		}
		g, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s): %v", b, err)
		}
		gb, _ := g.Append(nil)
		if string(gb) != string(b) {
			t.Errorf("round trip: got %s, want %s", gb, b)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "ctl\x00\x01\x1f", "tab\tnl\ncr\r", "héllo wörld ✓", "bad\xffutf8", "sep\u2028\u2029", "<html>&"} {
		got := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: not valid JSON: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if back != want {
			t.Errorf("AppendString(%q) decodes to %q, want %q", s, back, want)
		}
	}
}

func TestReconnectAdvised(t *testing.T) {
	tests := []struct {
		code int
		want bool
	}{
		{CloseNormal, false}, {CloseGoingAway, true}, {ClosePolicy, false}, {CloseTooBig, false},
		{CloseInternal, true}, {CloseRestart, true}, {CloseTryLater, true},
		{CloseTokenExpired, false}, {CloseForbidden, false}, {CloseReplaced, false},
		{CloseSlowConsumer, true}, {CloseHeartbeatTimeout, true}, {1006, true},
	}
	for _, tt := range tests {
		if got := ReconnectAdvised(tt.code); got != tt.want {
			t.Errorf("ReconnectAdvised(%d) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestAsErrorHidesInternals(t *testing.T) {
	e := AsError(errors.New("pq: password authentication failed for user root"))
	if e.Code != CodeInternal || strings.Contains(e.Message, "pq") {
		t.Errorf("got %+v, want a generic internal error", e)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []string{
		`{"type":"req","id":"42","method":"channel.subscribe","params":{"topic":"session:abc"},"idem":"x"}`,
		`{"type":"res","id":"42","ok":true,"result":{"epoch":"e1","offset":17}}`,
		`{"type":"res","id":"42","ok":false,"error":{"code":"forbidden","message":"no","retryable":false,"retryAfterMs":0,"details":{}}}`,
		`{"type":"event","event":"channel.message","topic":"session:abc","epoch":"e1","offset":17,"data":{"x":1}}`,
		`{"type":"req","id":"1","method":"a"}` + "\n" + `{"type":"req","id":"2","method":"b"}`,
		`{}`, `[]`, `null`, `{"type":"req","id":{"a":1}}`,
		`{"type":"res","id":"0","ok":true}`,
		`{"type":"req","id":"s1","method":"a.b","params":{ "a" : 1 },"meta":{"caller":{"userId":"<u>","deviceId":"d"}}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		Split(b, func(raw []byte) {
			fr, err := Decode(raw)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != CodeInvalidFrame {
					t.Fatalf("Decode error %v is not invalid_frame", err)
				}
				_ = ProbeID(raw)
				return
			}
			out, err := fr.Append(nil)
			if err != nil {
				t.Fatalf("Append of a decoded frame failed: %v", err)
			}
			if !json.Valid(out) {
				t.Fatalf("Append produced invalid JSON: %s", out)
			}
			if !utf8.Valid(out) {
				t.Fatalf("Append produced invalid UTF-8: %q", out)
			}
			// Round trip: what Append writes decodes to the same frame, and
			// encoding that again changes nothing (Append's output is the
			// normal form).
			back, err := Decode(out)
			if err != nil {
				t.Fatalf("Decode of Append's %s: %v (from %q)", out, err, raw)
			}
			if !reflect.DeepEqual(normalFrame(back), normalFrame(fr)) {
				t.Fatalf("round trip of %q through %s:\n got %+v\nwant %+v", raw, out, back, fr)
			}
			again, err := back.Append(nil)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("Append is not a fixed point: %s, then %s (%v)", out, again, err)
			}
		})
	})
}

// normalFrame is f with the normalisations a decode/encode round trip is
// allowed (Append writes what json.Marshal would, omitempty included): an
// error's empty details are dropped, and a successful response without a
// result has result null, and an event's position is written only as a
// whole, after its topic (AppendEvent: an epoch without a topic, or an
// offset without an epoch, is dropped). Raw JSON values (params, result,
// data) are otherwise copied as they came.
func normalFrame(f *Frame) Frame {
	n := *f
	if n.Type == TypeEvent {
		if n.Topic == "" {
			n.Epoch = ""
		}
		if n.Epoch == "" {
			n.Offset = 0
		}
	}
	if n.Type == TypeResponse && n.OK && len(n.Result) == 0 {
		n.Result = json.RawMessage("null")
	}
	if n.Error != nil {
		e := *n.Error
		if len(e.Details) == 0 {
			e.Details = nil
		}
		n.Error = &e
	}
	return n
}

// decodeSlow is Decode through encoding/json only, the reference of the
// fast path.
func decodeSlow(b []byte) (*Frame, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !utf8.Valid(b) {
		return nil, Errorf(CodeInvalidFrame, "not an object")
	}
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, Errorf(CodeInvalidFrame, "malformed frame: %s", jsonProblem(err))
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

var fastSeeds = []string{
	`{"type":"req","id":"42","method":"channel.subscribe","params":{"topic":"session:abc"},"idem":"x"}`,
	`{"type":"req","id":"s12","method":"files.read","params":{"path":"/etc/hosts"},"meta":{"caller":{"userId":"alice","deviceId":"phone-1"}}}`,
	`{"type":"req","id":"s1","method":"a.b","params":{},"meta":{"caller":{"userId":"u","deviceId":"d","appId":"x"}}}`,
	`{"type":"res","id":"42","ok":true,"result":{"epoch":"e1","offset":17}}`,
	`{"type":"res","id":"42","ok":true,"result":[1,-2.5e3,"x\u00e9\n",true,false,null,{}]}`,
	`{"type":"res","id":"42","ok":false,"error":{"code":"forbidden","message":"no","retryable":false,"retryAfterMs":0,"details":{"field":"a"}}}`,
	`{"type":"event","event":"channel.message","topic":"session:abc","epoch":"e1","offset":17,"data":{"x":1}}`,
	`{"type":"event","event":"rpc.progress","data":{"id":"7","data":{"line":"hello"}}}`,
	` { "type" : "req" , "id" : "1" , "method" : "a" , "params" : { "a" : [ 1 , 2 ] } } `,
	`{"Type":"req","id":"1","method":"a"}`,
	`{"type":"req","id":"1","id":"2","method":"a"}`,
	`{"type":"req","id":"1","method":"a","params":null}`,
	`{"type":"req","id":"a\"b","method":"a"}`,
	`{"type":"req","id":"1","method":"a","meta":{"caller":{"userId":"a"}},"meta":{"caller":{"deviceId":"b"}}}`,
	`{"type":"res","id":"1","ok":true,"result":1,"extra":[1,2]}`,
	`{"type":"event","event":"e","topic":"t","offset":01}`,
	`{"type":"event","event":"e","topic":"t","offset":1e2}`,
	`{"type":"event","event":"e","topic":"t","offset":18446744073709551615}`,
	`{"type":"res","id":"1","ok":true,"result":{"a":1,}}`,
	`{"type":"res","id":"1","ok":true,"result":"\u12"}`,
	`{"type":"req","id":"1","method":"a"}x`,
}

// TestDecodeFastMatchesSlow checks that the fast path decodes exactly as
// encoding/json does, or leaves the frame to it.
func TestDecodeFastMatchesSlow(t *testing.T) {
	for _, s := range fastSeeds {
		checkFastMatchesSlow(t, []byte(s))
	}
}

func checkFastMatchesSlow(t *testing.T, b []byte) {
	t.Helper()
	got, gerr := Decode(b)
	want, werr := decodeSlow(b)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: Decode error %v, encoding/json error %v", b, gerr, werr)
	}
	if gerr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkFastMatchesSlow(t, b)
	})
}

// TestAppendRequestMetaMatchesMarshal checks the hand-written meta encoding
// against json.Marshal.
func TestAppendRequestMetaMatchesMarshal(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta *Meta
	}{
		{"empty", &Meta{}},
		{"user only", &Meta{Caller: &Caller{UserID: "alice"}}},
		{"device", &Meta{Caller: &Caller{UserID: "alice", DeviceID: "phone-1"}}},
		{"app", &Meta{Caller: &Caller{UserID: "", DeviceID: "d", AppID: "app"}}},
		{"escapes", &Meta{Caller: &Caller{UserID: "a\"b\\c\n\u2028\xff", DeviceID: "é"}}},
		{"html", &Meta{Caller: &Caller{UserID: "<a>&", DeviceID: "d"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendRequest(nil, "s1", "a.b", json.RawMessage(`{}`), "", tc.meta)
			if err != nil {
				t.Fatal(err)
			}
			mb, _ := json.Marshal(tc.meta)
			want := `{"type":"req","id":"s1","method":"a.b","params":{},"meta":` + string(mb) + `}`
			if string(got) != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// TestScanResultMatchesDecode checks that ScanResult reads exactly the
// successful responses Decode reads, as Decode reads them, and leaves the
// rest to it.
func TestScanResultMatchesDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want bool
	}{
		{"as written", `{"type":"res","id":"s12","ok":true,"result":{"cmd":"echo","n":42}}`, true},
		{"spaced, reordered", ` { "result" : [1, "x\u00e9"] , "ok" : true , "id" : "7" , "type" : "res" } `, true},
		{"no result", `{"type":"res","id":"s1","ok":true}`, true},
		{"null result", `{"type":"res","id":"s1","ok":true,"result":null}`, true},
		{"error", `{"type":"res","id":"s1","ok":false,"error":{"code":"forbidden","message":"no"}}`, false},
		{"ok false", `{"type":"res","id":"s1","ok":false}`, false},
		{"request", `{"type":"req","id":"1","method":"a.b"}`, false},
		{"no type", `{"id":"s1","ok":true,"result":1}`, false},
		{"no ok", `{"type":"res","id":"s1","result":1}`, false},
		{"no id", `{"type":"res","ok":true,"result":1}`, false},
		{"empty id", `{"type":"res","id":"","ok":true}`, false},
		{"escaped id", `{"type":"res","id":"s\u0031","ok":true}`, false},
		{"long id", `{"type":"res","id":"` + strings.Repeat("x", MaxIDLength+1) + `","ok":true}`, false},
		{"duplicate", `{"type":"res","id":"s1","id":"s2","ok":true}`, false},
		{"other member", `{"type":"res","id":"s1","ok":true,"result":1,"meta":{}}`, false},
		{"key case", `{"type":"res","ID":"s1","ok":true}`, false},
		{"invalid result", `{"type":"res","id":"s1","ok":true,"result":{"a":1,}}`, false},
		{"invalid UTF-8", "{\"type\":\"res\",\"id\":\"s1\",\"ok\":true,\"result\":\"\xff\"}", false},
		{"trailing", `{"type":"res","id":"s1","ok":true}x`, false},
		{"ok truex", `{"type":"res","id":"s1","ok":truex}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ok := ScanResult([]byte(tc.in))
			if ok != tc.want {
				t.Fatalf("ScanResult(%q): got ok %v, want %v", tc.in, ok, tc.want)
			}
			checkScanResult(t, []byte(tc.in))
		})
	}
}

// checkScanResult checks that what ScanResult accepts in b, Decode reads
// as the same successful response.
func checkScanResult(t *testing.T, b []byte) {
	t.Helper()
	id, result, ok := ScanResult(b)
	if !ok {
		return
	}
	f, err := Decode(b)
	if err != nil {
		t.Fatalf("%q: ScanResult accepted what Decode refuses: %v", b, err)
	}
	want := Frame{Type: TypeResponse, ID: f.ID, OK: true, Result: f.Result}
	if !reflect.DeepEqual(*f, want) {
		t.Fatalf("%q: Decode read more than a result: %+v", b, f)
	}
	if string(id) != f.ID || !bytes.Equal(result, f.Result) {
		t.Fatalf("%q: got id %q result %s, Decode read id %q result %s", b, id, result, f.ID, f.Result)
	}
}

func FuzzScanResult(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"type":"res","id":"s1","ok":true,"result":null}`))
	f.Fuzz(checkScanResult)
}

// TestScanResultAllocates checks that reading a relayed answer allocates
// nothing: the relay copies the result once, into the caller's frame.
func TestScanResultAllocates(t *testing.T) {
	b := []byte(`{"type":"res","id":"s123","ok":true,"result":{"cmd":"echo","n":42}}`)
	if n := testing.AllocsPerRun(100, func() { ScanResult(b) }); n != 0 {
		t.Errorf("got %v allocations per ScanResult, want 0", n)
	}
}

// TestAppendRequestCallerStays checks that a relayed request's meta and
// caller do not escape (the relay builds them on its stack): appending
// into a buffer large enough allocates nothing.
func TestAppendRequestCallerStays(t *testing.T) {
	dst := make([]byte, 0, 512)
	params := json.RawMessage(`{"cmd":"echo"}`)
	n := testing.AllocsPerRun(100, func() {
		c := Caller{UserID: "alice", DeviceID: "phone-1"}
		if _, err := AppendRequest(dst, "s1", "files.read", params, "", &Meta{Caller: &c}); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("got %v allocations per AppendRequest, want 0", n)
	}
}

// TestScanRequestMatchesDecode checks that ScanRequest reads exactly the
// plain requests Decode reads, as Decode reads them, and leaves the rest
// to it.
func TestScanRequestMatchesDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want bool
	}{
		{"as written", `{"type":"req","id":"17","method":"rpc.call","params":{"target":{"deviceId":"m"},"method":"a.b"}}`, true},
		{"spaced, reordered", ` { "params" : { "a" : [1, "x\u00e9"] } , "method" : "a.b" , "id" : "7" , "type" : "req" } `, true},
		{"no params", `{"type":"req","id":"1","method":"sys.ping"}`, true},
		{"null params", `{"type":"req","id":"1","method":"a.b","params":null}`, false},
		{"array params", `{"type":"req","id":"1","method":"a.b","params":[1]}`, false},
		{"idem", `{"type":"req","id":"1","method":"a.b","params":{},"idem":"k"}`, false},
		{"meta", `{"type":"req","id":"1","method":"a.b","meta":{"caller":{"userId":"u"}}}`, false},
		{"response", `{"type":"res","id":"s1","ok":true,"result":1}`, false},
		{"no type", `{"id":"1","method":"a.b"}`, false},
		{"no id", `{"type":"req","method":"a.b"}`, false},
		{"no method", `{"type":"req","id":"1"}`, false},
		{"empty method", `{"type":"req","id":"1","method":""}`, false},
		{"long method", `{"type":"req","id":"1","method":"` + strings.Repeat("m", MaxMethodLength+1) + `"}`, false},
		{"long id", `{"type":"req","id":"` + strings.Repeat("x", MaxIDLength+1) + `","method":"a.b"}`, false},
		{"escaped id", `{"type":"req","id":"\u0031","method":"a.b"}`, false},
		{"duplicate", `{"type":"req","id":"1","method":"a.b","method":"c.d"}`, false},
		{"invalid params", `{"type":"req","id":"1","method":"a.b","params":{"a":1,}}`, false},
		{"invalid UTF-8", "{\"type\":\"req\",\"id\":\"1\",\"method\":\"a.b\",\"params\":{\"a\":\"\xff\"}}", false},
		{"trailing", `{"type":"req","id":"1","method":"a.b"}x`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, ok := ScanRequest([]byte(tc.in), anyMethod)
			if ok != tc.want {
				t.Fatalf("ScanRequest(%q): got ok %v, want %v", tc.in, ok, tc.want)
			}
			checkScanRequest(t, []byte(tc.in))
		})
	}
}

// checkScanRequest checks that what ScanRequest accepts in b, Decode
// reads as the same request.
func checkScanRequest(t *testing.T, b []byte) {
	t.Helper()
	id, method, params, ok := ScanRequest(b, anyMethod)
	if !ok {
		return
	}
	f, err := Decode(b)
	if err != nil {
		t.Fatalf("%q: ScanRequest accepted what Decode refuses: %v", b, err)
	}
	want := Frame{Type: TypeRequest, ID: string(id), Method: string(method), Params: params}
	if !reflect.DeepEqual(*f, want) {
		t.Fatalf("%q:\n got %+v\nwant %+v (Decode)", b, want, *f)
	}
}

func anyMethod([]byte) bool { return true }

// TestScanRequestAccept checks that ScanRequest reads only the requests
// whose method accept takes, asking it once.
func TestScanRequestAccept(t *testing.T) {
	b := []byte(`{"type":"req","id":"1","method":"sys.ping","params":{}}`)
	var asked []string
	for _, want := range []bool{true, false} {
		_, _, _, ok := ScanRequest(b, func(method []byte) bool {
			asked = append(asked, string(method))
			return want
		})
		if ok != want {
			t.Errorf("accept %v: got ok %v, want %v", want, ok, want)
		}
	}
	if !slices.Equal(asked, []string{"sys.ping", "sys.ping"}) {
		t.Errorf("got accept asked about %q, want sys.ping once per scan", asked)
	}
}

func FuzzScanRequest(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkScanRequest)
}

// TestScanRequestAllocates checks that reading a request in place
// allocates nothing.
func TestScanRequestAllocates(t *testing.T) {
	b := []byte(`{"type":"req","id":"17","method":"rpc.call","params":{"target":{"deviceId":"m"},"method":"bench.echo","params":{"n":42}}}`)
	if n := testing.AllocsPerRun(100, func() { ScanRequest(b, anyMethod) }); n != 0 {
		t.Errorf("got %v allocations per ScanRequest, want 0", n)
	}
}
