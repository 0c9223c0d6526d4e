package hub

import (
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/junctionhq/junction/internal/auth"
)

// TestAdminLatencyQuantiles checks the quantiles of a histogram's
// observations between two readings, as admin:stats reports them, against
// a real Prometheus histogram.
func TestAdminLatencyQuantiles(t *testing.T) {
	buckets := []float64{.001, .01, .1, 1}
	read := func(h prometheus.Histogram) histSample {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			t.Fatal(err)
		}
		var s histSample
		s.add(m.GetHistogram())
		return s
	}
	for _, tc := range []struct {
		name          string
		before, after []float64 // observations before the first reading, and between the readings
		p50, p99      float64   // milliseconds
	}{
		{name: "nothing observed", before: []float64{.5}, p50: 0, p99: 0},
		{name: "one bucket", after: []float64{.005, .005, .005, .005}, p50: 5.5, p99: 9.91},
		{name: "earlier observations do not count", before: []float64{.5, .5, .5}, after: []float64{.0005, .0005}, p50: .5, p99: .99},
		{name: "spread", after: []float64{.0005, .005, .05, .5}, p50: 10, p99: 1000 * (.1 + .9*.96)},
		{name: "beyond the last bound", after: []float64{5, 5}, p50: 1000, p99: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x", Buckets: buckets})
			for _, v := range tc.before {
				h.Observe(v)
			}
			prev := read(h)
			for _, v := range tc.after {
				h.Observe(v)
			}
			d := read(h).since(prev)
			if d.count != uint64(len(tc.after)) {
				t.Errorf("count: got %d, want %d", d.count, len(tc.after))
			}
			if got := d.quantileMs(.5); math.Abs(got-tc.p50) > 1e-6 {
				t.Errorf("p50: got %v ms, want %v", got, tc.p50)
			}
			if got := d.quantileMs(.99); math.Abs(got-tc.p99) > 1e-6 {
				t.Errorf("p99: got %v ms, want %v", got, tc.p99)
			}
		})
	}
}

// TestKindSlots: every device kind has its own slot, app keys and unknown
// kinds theirs, and the names round-trip.
func TestKindSlots(t *testing.T) {
	seen := map[uint8]string{}
	for _, k := range auth.Kinds {
		s := kindSlot(&auth.Principal{Kind: k})
		if prev, dup := seen[s]; dup {
			t.Errorf("kinds %s and %s share slot %d", prev, k, s)
		}
		seen[s] = k
		if got := kindName(s); got != k {
			t.Errorf("kindName(kindSlot(%s)): got %q", k, got)
		}
	}
	if got := kindName(kindSlot(&auth.Principal{AppID: "app1"})); got != kindApp {
		t.Errorf("an app key's kind: got %q, want %q", got, kindApp)
	}
	if got := kindName(kindSlot(&auth.Principal{Kind: "toaster"})); got != kindOther {
		t.Errorf("an unknown kind: got %q, want %q", got, kindOther)
	}
	if len(auth.Kinds)+2 > kindSlots {
		t.Errorf("kindSlots %d is too few for %d kinds, app and other", kindSlots, len(auth.Kinds))
	}
}

// TestAdminNamespaceReserved: the admin namespace is built in, and a
// configuration may not declare it (its publish rule holds for nobody,
// admins included).
func TestAdminNamespaceReserved(t *testing.T) {
	nss, err := compileNamespaces(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ns := nss["admin"]; ns == nil || ns.cfg.HistorySize != 60 {
		t.Fatalf("built-in admin namespace: got %+v, want one keeping 60 publications", ns)
	}
	_, err = compileNamespaces([]NamespaceConfig{{Pattern: "admin:{x}", Subscribe: []string{"any"}, Publish: []string{"any"}}})
	if err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("declaring admin: got %v, want an error saying it is reserved", err)
	}
}
