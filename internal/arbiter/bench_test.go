package arbiter

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Decisions per second of the pure arbiter (issue 13, item 11). One
// decision is one input (Request, Cancel, Clear, AppEnded or Tick) and the
// Output it returns. The device declares three surfaces (main and led with
// no minimum interval, overlay with 300 ms, the BLE glasses' figure) and
// twelve apps compete for them: two system, three foreground, four
// background and three ambient. Time moves 1 ms per input and the bench
// ticks whenever Output.Next is due, as the per-device executor does.
//
//	go test -run '^$' -bench . -benchmem ./internal/arbiter

// benchMix is one input mix, in percent of inputs (the rest are requests).
type benchMix struct {
	name                         string
	cancel, clear, ended, ticker int     // percent of inputs
	ttl, restore, force          float64 // fraction of requests with a TTL (50–500 ms), Restore, Force
}

var benchMixes = []benchMix{
	// Latest-wins: each app replaces its own request (captions, status).
	{name: "latest-wins"},
	// Preempt and restore: higher classes come and go over lower ones
	// that wait to come back.
	{name: "preempt-restore", cancel: 15, ttl: 0.5, restore: 0.5},
	// Expiry: most requests have a short TTL; the clock runs out many.
	{name: "expire", ticker: 20, ttl: 0.9},
	// Everything: cancels, clears, apps ending, forced requests.
	{name: "mixed", cancel: 10, clear: 5, ended: 2, ticker: 10, ttl: 0.4, restore: 0.3, force: 0.05},
}

var benchSurfaces = []Surface{{Name: "main"}, {Name: "overlay", MinInterval: 300 * time.Millisecond}, {Name: "led"}}

// benchApps are the competing apps with their classes.
var benchApps = func() []struct {
	id    string
	class Class
} {
	classes := []Class{System, System, Foreground, Foreground, Foreground, Background, Background, Background, Background, Ambient, Ambient, Ambient}
	out := make([]struct {
		id    string
		class Class
	}, len(classes))
	for i, c := range classes {
		out[i].id, out[i].class = "app"+strconv.Itoa(i), c
	}
	return out
}()

// countKinds is a Metrics without locking, to check what the bench did.
type countKinds map[Kind]int

func (c countKinds) Event(kind Kind, _ Reason) { c[kind]++ }

func BenchmarkDecide(b *testing.B) {
	for _, mix := range benchMixes {
		b.Run(mix.name, func(b *testing.B) { benchDecide(b, mix, nil) })
	}
	// With the Prometheus counter the gateway uses (one CounterVec for
	// every device).
	b.Run("mixed+prometheus", func(b *testing.B) {
		benchDecide(b, benchMixes[len(benchMixes)-1], NewPrometheus(prometheus.NewRegistry()))
	})
}

func benchDecide(b *testing.B, mix benchMix, metrics Metrics) {
	counts := countKinds{}
	var m Metrics = counts
	if metrics != nil {
		m = metrics
	}
	b.ReportAllocs()
	b.ResetTimer()
	events, err := decideLoop(b.N, mix, m, b.ResetTimer)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
	if metrics == nil && b.N > 1000 && counts[Shown] == 0 {
		b.Fatalf("nothing was shown: %v", counts)
	}
}

// decideLoop feeds n inputs of mix to a new Arbiter and returns how many
// events they produced; ready is called once the set-up is done.
func decideLoop(n int, mix benchMix, m Metrics, ready func()) (events int, err error) {
	a, err := New(Config{Surfaces: benchSurfaces, Metrics: m})
	if err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	// Request ids cycle through a pool far larger than what can be live
	// (12 apps × 3 surfaces): a duplicate rejection would be the bench's
	// fault (TestBenchDecideNoDuplicates checks).
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = "r" + strconv.Itoa(i)
	}
	content := []byte("caption text of a typical length, about forty bytes")
	now := t0
	var next time.Time
	ready()
	for i := range n {
		now = now.Add(time.Millisecond)
		var out Output
		app := benchApps[rng.IntN(len(benchApps))]
		surf := benchSurfaces[rng.IntN(len(benchSurfaces))].Name
		switch p := rng.IntN(100); {
		case !next.IsZero() && !now.Before(next), p < mix.ticker:
			out = a.Tick(now)
		case p < mix.ticker+mix.cancel:
			out = a.Cancel(now, app.id, ids[(i+len(ids)-1-rng.IntN(64))%len(ids)])
		case p < mix.ticker+mix.cancel+mix.clear:
			out = a.Clear(now, app.id, surf)
		case p < mix.ticker+mix.cancel+mix.clear+mix.ended:
			out = a.AppEnded(now, app.id)
		default:
			r := Request{ID: ids[i%len(ids)], App: app.id, Class: app.class, Surface: surf, Content: content}
			if rng.Float64() < mix.ttl {
				r.TTL = time.Duration(50+rng.IntN(450)) * time.Millisecond
			}
			r.Restore = rng.Float64() < mix.restore
			r.Force = rng.Float64() < mix.force
			out = a.Request(now, r)
		}
		next = out.Next
		events += len(out.Events)
	}
	return events, nil
}

// TestBenchDecideNoDuplicates runs the bench's mixes briefly and checks
// that the bench itself never reuses a live request id (which would turn
// decisions into cheap duplicate rejections and flatter the figure).
func TestBenchDecideNoDuplicates(t *testing.T) {
	for _, mix := range benchMixes {
		var c Counts
		if _, err := decideLoop(50000, mix, &c, func() {}); err != nil {
			t.Fatal(err)
		}
		got := c.Snapshot()
		if got[CountKey{Shown, ""}] == 0 {
			t.Errorf("%s: nothing was shown: %v", mix.name, got)
		}
		for k, n := range got {
			if k.Reason == ReasonDuplicate || k.Reason == ReasonInvalid || k.Reason == ReasonUnknownSurface {
				t.Errorf("%s: %d events %s:%s", mix.name, n, k.Kind, k.Reason)
			}
		}
	}
}
