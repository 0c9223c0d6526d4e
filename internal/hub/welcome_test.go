package hub

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/auth"
)

// TestWelcomeTemplate: the welcome built from the cached template is byte
// for byte what encoding/json writes for the whole event.
func TestWelcomeTemplate(t *testing.T) {
	h, err := New(Config{NodeID: `node "quoted" <&> é`}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	h.AddFeature("rpc")
	for _, p := range []*auth.Principal{
		{UserID: "u1", DeviceID: "d1", Kind: "phone", Scopes: []string{"read", "write"}, ExpiresAtMicros: auth.ExpiryMicros(time.Unix(1795330254, 0))},
		{UserID: `"<weird>"\u2028`, Kind: "machine", Scopes: nil},
		{AppID: "app", Scopes: []string{}},
	} {
		for _, id := range []string{"c-ABCDEFGHIJKLMNOP", `c-"x"`} {
			want, _ := json.Marshal(h.welcomeValue(id, p.Info()))
			if got := h.welcomeData(id, p); string(got) != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		}
	}
}

// FuzzWelcomePrincipal: the principal and connection id of a welcome are
// encoded exactly as encoding/json encodes them.
func FuzzWelcomePrincipal(f *testing.F) {
	f.Add("u1", "d1", "phone", "", "read", "write", int64(1795330254123), "c-ABC")
	f.Add(`"<weird>"`, "", "machine", "", "", "\u2028", int64(0), `c-"x"`)
	f.Add("", "", "", "app", "a&b", "\xff", int64(-1), "é")
	f.Fuzz(func(t *testing.T, user, device, kind, app, s1, s2 string, expMs int64, connID string) {
		p := &auth.Principal{UserID: user, DeviceID: device, Kind: kind, AppID: app, Scopes: []string{s1, s2}}
		if expMs != 0 {
			p.ExpiresAtMicros = auth.ExpiryMicros(time.UnixMilli(expMs))
		}
		if s1 == "" {
			p.Scopes = nil
		}
		want, _ := json.Marshal(p.Info())
		if got := appendPrincipal(nil, p); string(got) != string(want) {
			t.Fatalf("principal\ngot  %s\nwant %s", got, want)
		}
		want, _ = json.Marshal(connID)
		if got := appendJSONString(nil, connID); string(got) != string(want) {
			t.Fatalf("string\ngot  %s\nwant %s", got, want)
		}
	})
}

// TestWelcomeBinaryLimit: a hub that takes binary messages announces their
// limit in the welcome; one that does not, announces none.
func TestWelcomeBinaryLimit(t *testing.T) {
	for _, withBinary := range []bool{false, true} {
		h, err := New(Config{MaxBinaryBytes: 1234}, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if withBinary {
			h.SetBinaryHandler(func(*Conn, []byte) {})
		}
		p := &auth.Principal{UserID: "u1", DeviceID: "d1", Scopes: []string{"read"}}
		var w struct {
			Limits map[string]int `json:"limits"`
		}
		if err := json.Unmarshal(h.welcomeData("c-1", p), &w); err != nil {
			t.Fatal(err)
		}
		got, ok := w.Limits["maxBinaryBytes"]
		if withBinary && got != 1234 || !withBinary && ok {
			t.Errorf("binary handler %v: limits %v, want maxBinaryBytes %v", withBinary, w.Limits, map[bool]any{true: 1234, false: "absent"}[withBinary])
		}
	}
}
