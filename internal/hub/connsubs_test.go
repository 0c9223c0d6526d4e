package hub

import (
	"fmt"
	"testing"
)

// TestConnSubs: lookups agree with the set of subscriptions across the
// switch from a slice to an index and back.
func TestConnSubs(t *testing.T) {
	var cs connSubs
	want := map[string]*subscriber{}
	check := func() {
		t.Helper()
		if len(cs.subs) != len(want) {
			t.Fatalf("%d subscriptions, want %d", len(cs.subs), len(want))
		}
		for topic, s := range want {
			if got := cs.get(topic); got != s {
				t.Fatalf("get(%q) = %p, want %p", topic, got, s)
			}
		}
		if cs.get("absent") != nil {
			t.Fatal("get(absent) found something")
		}
	}
	for i := range 3 * indexFrom {
		s := &subscriber{topic: fmt.Sprintf("t:%d", i)}
		cs.put(s)
		want[s.topic] = s
		check()
	}
	if cs.index == nil {
		t.Fatal("no index beyond indexFrom subscriptions")
	}
	for i := range 3 * indexFrom {
		if i%3 == 0 {
			continue
		}
		topic := fmt.Sprintf("t:%d", i)
		cs.del(want[topic])
		delete(want, topic)
		check()
	}
	for topic, s := range want { // down to indexFrom/2: the index goes
		if len(want) == indexFrom/2 {
			break
		}
		cs.del(s)
		delete(want, topic)
		check()
	}
	if cs.index != nil {
		t.Fatalf("index kept with %d subscriptions", len(cs.subs))
	}
}
