package cluster

import "testing"

// TestParseMessageEvent: pub/sub messages with and without an event name
// (the form of nodes that predate event names) both decode; a bad event
// length is refused.
func TestParseMessageEvent(t *testing.T) {
	tests := []struct {
		name, msg         string
		event, data, info string
		bad               bool
	}{
		{name: "old form", msg: `E1|7|1000|0|{"a":1}`, data: `{"a":1}`},
		{name: "old form with info", msg: `E1|7|1000|15|{"connId":"c1"}5`, data: `5`, info: "c1"},
		{name: "event", msg: `E1|7|1000|0:4|temp{"c":21}`, event: "temp", data: `{"c":21}`},
		{name: "event and info", msg: `E1|7|1000|15:4|{"connId":"c1"}temp1`, event: "temp", data: `1`, info: "c1"},
		{name: "event length past the end", msg: `E1|7|1000|0:9|temp`, bad: true},
		{name: "zero event length", msg: `E1|7|1000|0:0|1`, bad: true},
		{name: "event length not a number", msg: `E1|7|1000|0:x|1`, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseMessage(tt.msg)
			if tt.bad {
				if err == nil {
					t.Fatalf("got %+v, want an error", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Event != tt.event || string(p.Data) != tt.data || p.Offset != 7 || p.Epoch != "E1" || p.TimeMs != 1000 {
				t.Fatalf("got %+v data %s, want event %q data %s at E1/7", p, p.Data, tt.event, tt.data)
			}
			if tt.info != "" && (p.Info == nil || p.Info.ConnID != tt.info) {
				t.Fatalf("got info %+v, want connId %s", p.Info, tt.info)
			}
		})
	}
}
