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
		{UserID: "u1", DeviceID: "d1", Kind: "phone", Scopes: []string{"read", "write"}, ExpiresAt: time.Unix(1795330254, 0)},
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
