package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeCompact(t *testing.T) {
	tests := []struct {
		name, in           string
		topic, event, pay  string
		wantErr, wantTopic bool
	}{
		{name: "full", in: `["sensor:1","temp",{ "c" : 21 }]`, topic: "sensor:1", event: "temp", pay: `{"c":21}`},
		{name: "no payload", in: ` ["sensor:1", "unsubscribe"] `, topic: "sensor:1", event: "unsubscribe", pay: `{}`},
		{name: "null payload", in: `["t:1","x",null]`, topic: "t:1", event: "x", pay: `null`},
		{name: "scalar payload", in: `["t:1","x","s"]`, topic: "t:1", event: "x", pay: `"s"`},
		{name: "object", in: `{"type":"req"}`, wantErr: true},
		{name: "empty", in: ``, wantErr: true},
		{name: "not JSON", in: `[x]`, wantErr: true},
		{name: "invalid UTF-8", in: "[\"t\xff\",\"x\",1]", wantErr: true},
		{name: "one element", in: `["t:1"]`, wantErr: true, topic: "t:1", wantTopic: true},
		{name: "four elements", in: `["t:1","x",1,2]`, wantErr: true, topic: "t:1", wantTopic: true},
		{name: "number topic", in: `[1,"x",1]`, wantErr: true},
		{name: "empty topic", in: `["","x",1]`, wantErr: true},
		{name: "long topic", in: `["` + strings.Repeat("a", MaxTopicLength+1) + `","x",1]`, wantErr: true},
		{name: "empty event", in: `["t:1","",1]`, wantErr: true, topic: "t:1", wantTopic: true},
		{name: "number event", in: `["t:1",2,1]`, wantErr: true, topic: "t:1", wantTopic: true},
		{name: "long event", in: `["t:1","` + strings.Repeat("e", MaxCompactEventLength+1) + `",1]`, wantErr: true, topic: "t:1", wantTopic: true},
		{name: "two arrays", in: "[\"t\",\"x\",1]\n[\"t\",\"y\",2]", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := DecodeCompact([]byte(tt.in))
			if tt.wantErr {
				var pe *Error
				if !errors.As(err, &pe) || pe.Code != CodeInvalidFrame {
					t.Fatalf("got %+v, %v, want invalid_frame", m, err)
				}
				if tt.wantTopic && m.Topic != tt.topic {
					t.Fatalf("got topic %q with the error, want %q", m.Topic, tt.topic)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Topic != tt.topic || m.Event != tt.event || string(m.Payload) != tt.pay {
				t.Fatalf("got %q %q %s, want %q %q %s", m.Topic, m.Event, m.Payload, tt.topic, tt.event, tt.pay)
			}
		})
	}
}

func TestAppendCompact(t *testing.T) {
	got := string(AppendCompact(nil, "a\"b", "ev\n", nil))
	if want := `["a\"b","ev\n",{}]`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	got = string(AppendCompact([]byte("x"), "t:1", "temp", json.RawMessage(`21`)))
	if want := `x["t:1","temp",21]`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestNormalizePublicationEvent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""}, {"message", ""}, {"temp", "temp"}, {"relay.state", "relay.state"}, {"a_b-c:d@e=f~g+h", "a_b-c:d@e=f~g+h"},
		{strings.Repeat("e", MaxPublicationEventLength), strings.Repeat("e", MaxPublicationEventLength)},
	}
	for _, tt := range tests {
		if got, err := NormalizePublicationEvent(tt.in); err != nil || got != tt.want {
			t.Errorf("NormalizePublicationEvent(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"error", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "skipped", "snapshot", "join", "leave",
		"te mp", "a/b", "$x", "é", strings.Repeat("e", MaxPublicationEventLength+1)} {
		_, err := NormalizePublicationEvent(bad)
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeBadRequest || pe.Details["field"] != "event" {
			t.Errorf("NormalizePublicationEvent(%q): got %v, want bad_request on field event", bad, err)
		}
	}
	if PublicationEvent("") != "message" || PublicationEvent("temp") != "temp" {
		t.Fatal("PublicationEvent does not name the default")
	}
}

func TestAppendPublication(t *testing.T) {
	plain := AppendPublication(nil, "t:1", "E", 3, "", json.RawMessage(`1`))
	if want := AppendEvent(nil, EventChannelMessage, "t:1", "E", 3, json.RawMessage(`1`)); !bytes.Equal(plain, want) {
		t.Fatalf("got %s, want the unnamed event %s", plain, want)
	}
	named := AppendPublication(nil, "t:1", "E", 3, "temp", json.RawMessage(`1`))
	f, err := Decode(named)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "temp" || f.Event != EventChannelMessage || f.Offset != 3 || string(f.Data) != "1" {
		t.Fatalf("got %+v from %s", f, named)
	}
	again, _ := f.Append(nil)
	if !bytes.Equal(again, named) {
		t.Fatalf("got %s re-encoded, want %s", again, named)
	}
}

// FuzzDecodeCompact: the compact decoder never panics, fails only with
// invalid_frame, and what it accepts encodes back (AppendCompact) to valid
// JSON that decodes to the same message.
func FuzzDecodeCompact(f *testing.F) {
	for _, s := range []string{
		`["sensor:1","subscribe",{"id":"s1","since":{"epoch":"E","offset":3}}]`,
		`["sensor:1","unsubscribe",{}]`, `["sensor:1","temp",{"c":21.5}]`, `["sensor:1","message"]`,
		`["$rpc","register",{"methods":["relay.set"]}]`, `["$rpc","result",{"id":"s1","result":{"on":true}}]`,
		`["$rpc","error",{"id":"s1","code":"conflict","message":"busy"}]`,
		`[]`, `[1,2,3]`, `["a"]`, `{"type":"req"}`, `["t","e",null]`, "[\"\\u2028\",\"\\ud800\",1]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeCompact(b)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeInvalidFrame {
				t.Fatalf("error %v is not invalid_frame", err)
			}
			return
		}
		if m.Topic == "" || m.Event == "" || len(m.Payload) == 0 {
			t.Fatalf("accepted %q as %+v", b, m)
		}
		out := AppendCompact(nil, m.Topic, m.Event, m.Payload)
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("AppendCompact wrote %q from %q", out, b)
		}
		back, err := DecodeCompact(out)
		if err != nil {
			t.Fatalf("decode of %s: %v (from %q)", out, err, b)
		}
		if back.Topic != m.Topic || back.Event != m.Event || !bytes.Equal(back.Payload, m.Payload) {
			t.Fatalf("round trip: got %+v, want %+v", back, m)
		}
	})
}
