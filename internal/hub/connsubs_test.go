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
		if cs.count() != len(want) || len(cs.list()) != len(want) {
			t.Fatalf("%d subscriptions (%d listed), want %d", cs.count(), len(cs.list()), len(want))
		}
		if (cs.one != nil) != (len(want) == 1) || (cs.many != nil) != (len(want) > 1) {
			t.Fatalf("one set: %v, many set: %v with %d subscriptions", cs.one != nil, cs.many != nil, len(want))
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
	if cs.many == nil || cs.many.index == nil {
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
	if cs.many.index != nil {
		t.Fatalf("index kept with %d subscriptions", cs.count())
	}
	for topic, s := range want { // down to none, through one
		cs.del(s)
		delete(want, topic)
		check()
	}
	if got := cs.clear(); len(got) != 0 {
		t.Fatalf("clear of an empty set returned %d", len(got))
	}
}
