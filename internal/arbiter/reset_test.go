package arbiter

import (
	"testing"
	"time"
)

// TestReset: every live request hears its last event and no command is
// sent: the shown one hidden with cleared, the one leaving with its
// reason, the pending one hidden with cleared, the waiting ones cleared;
// afterwards the surfaces are clear and free of throttle and lease.
func TestReset(t *testing.T) {
	steps := []step{
		{0, request(req("f1", "fg", Foreground).restore()), "main show f1; f1 shown; next=-"},
		{10, request(req("s1", "sys", System)), "s1 queued:throttle; next=300"},
		{300, tick, "main show s1; s1 shown; f1 hidden:preempted pending; next=-"},
		{310, request(req("b1", "bg", Background).restore().on("led")), "led show b1; b1 shown; next=-"},
		{320, request(req("b2", "bg2", Background).restore().on("led")), "b2 queued:busy; next=10310"},
		{330, request(req("s2", "sys", System)), "s2 queued:throttle; next=600"},
		{340, func(a *Arbiter, now time.Time) Output { return a.Reset(now) },
			"s1 hidden:superseded; f1 hidden:cleared; s2 cleared; b1 hidden:cleared; b2 cleared; next=-"},
		{350, request(req("b3", "bg2", Background).on("led")), "led show b3; b3 shown; next=-"},
		{360, request(req("f2", "fg", Foreground)), "main show f2; f2 shown; next=-"},
	}
	a, err := New(glasses)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		if got := format(s.do(a, at(s.at))); got != s.want {
			t.Fatalf("step %d at %d ms:\n got %s\nwant %s", i, s.at, got, s.want)
		}
	}
	if len(a.live) != 2 {
		t.Fatalf("live %d, want 2", len(a.live))
	}
}
