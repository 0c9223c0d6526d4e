package arbiter

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var t0 = time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// req builds a request on "main" with no TTL.
func req(id, app string, class Class) Request {
	return Request{ID: id, App: app, Class: class, Surface: "main", Content: []byte(id)}
}

func (r Request) ttl(d time.Duration) Request { r.TTL = d; return r }
func (r Request) restore() Request            { r.Restore = true; return r }
func (r Request) force() Request              { r.Force = true; return r }
func (r Request) on(s string) Request         { r.Surface = s; return r }

// format writes an Output as one line: commands, then events, then the
// next wake-up in ms after t0 ("next=-" for none).
func format(o Output) string {
	var parts []string
	for _, c := range o.Commands {
		if c.Op == Show {
			parts = append(parts, fmt.Sprintf("%s show %s", c.Surface, c.Request.ID))
		} else {
			parts = append(parts, fmt.Sprintf("%s clear", c.Surface))
		}
	}
	for _, e := range o.Events {
		s := e.Request + " " + e.Kind.String()
		if e.Reason != "" {
			s += ":" + string(e.Reason)
		}
		if e.RetryAfter > 0 {
			s += " retry=" + e.RetryAfter.String()
		}
		if e.Pending {
			s += " pending"
		}
		parts = append(parts, s)
	}
	if o.Next.IsZero() {
		parts = append(parts, "next=-")
	} else {
		parts = append(parts, fmt.Sprintf("next=%d", o.Next.Sub(t0).Milliseconds()))
	}
	return strings.Join(parts, "; ")
}

type step struct {
	at   int // ms after t0
	do   func(a *Arbiter, now time.Time) Output
	want string
}

func request(r Request) func(*Arbiter, time.Time) Output {
	return func(a *Arbiter, now time.Time) Output { return a.Request(now, r) }
}
func tick(a *Arbiter, now time.Time) Output     { return a.Tick(now) }
func bootDone(a *Arbiter, now time.Time) Output { return a.BootDone(now) }
func cancel(app, id string) func(*Arbiter, time.Time) Output {
	return func(a *Arbiter, now time.Time) Output { return a.Cancel(now, app, id) }
}
func clearOut(app, surface string) func(*Arbiter, time.Time) Output {
	return func(a *Arbiter, now time.Time) Output { return a.Clear(now, app, surface) }
}
func ended(app string) func(*Arbiter, time.Time) Output {
	return func(a *Arbiter, now time.Time) Output { return a.AppEnded(now, app) }
}

// glasses: "main" with the 300 ms interval of BLE glasses, "led" with none.
var glasses = Config{Surfaces: []Surface{{"main", 300 * time.Millisecond}, {"led", 0}}}

// screen: "main" with no minimum interval.
var screen = Config{Surfaces: []Surface{{"main", 0}}}

func TestScenarios(t *testing.T) {
	booting := screen
	booting.Booting = true
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"free surface shows at once", screen, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
		}},
		{"unknown surface rejected", screen, []step{
			{0, request(req("r1", "fg", Foreground).on("hud")), "r1 rejected:unknown_surface; next=-"},
		}},
		{"invalid request rejected", screen, []step{
			{0, request(req("r1", "", Foreground)), "r1 rejected:invalid; next=-"},
			{0, request(req("r2", "fg", Foreground).ttl(-time.Second)), "r2 rejected:invalid; next=-"},
			{0, request(req("r3", "fg", Class(9))), "r3 rejected:invalid; next=-"},
		}},
		{"duplicate live id rejected", screen, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{1, request(req("r1", "other", Ambient)), "r1 rejected:duplicate; next=-"},
		}},
		{"higher class preempts", screen, []step{
			{0, request(req("a1", "amb", Ambient)), "main show a1; a1 shown; next=-"},
			{1, request(req("b1", "bg", Background)), "main show b1; b1 shown; a1 hidden:preempted; next=-"},
			{2, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; b1 hidden:preempted; next=-"},
			{3, request(req("s1", "sys", System)), "main show s1; s1 shown; f1 hidden:preempted; next=-"},
		}},
		{"lower class rejected busy with retry-after", screen, []step{
			{0, request(req("f1", "fg", Foreground).ttl(5 * time.Second)), "main show f1; f1 shown; next=5000"},
			{1000, request(req("b1", "bg", Background)), "b1 rejected:busy retry=4s; next=5000"},
			{1000, request(req("a1", "amb", Ambient)), "a1 rejected:busy retry=4s; next=5000"},
		}},
		{"lower class without TTL above: no retry-after", screen, []step{
			{0, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; next=-"},
			{1, request(req("b1", "bg", Background)), "b1 rejected:busy; next=-"},
		}},
		{"lower class with restore waits, shown when the surface frees", screen, []step{
			{0, request(req("f1", "fg", Foreground).ttl(2 * time.Second)), "main show f1; f1 shown; next=2000"},
			{500, request(req("b1", "bg", Background).restore()), "b1 queued:busy; next=2000"},
			{2000, tick, "main show b1; b1 shown; f1 hidden:expired; next=-"},
		}},
		{"equal class: the newest wins", screen, []step{
			{0, request(req("s1", "sysA", System)), "main show s1; s1 shown; next=-"},
			{1, request(req("s2", "sysB", System)), "main show s2; s2 shown; s1 hidden:preempted; next=-"},
		}},
		{"latest wins per app: shown one hidden superseded", screen, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{1, request(req("r2", "fg", Foreground)), "main show r2; r2 shown; r1 hidden:superseded; next=-"},
		}},
		{"latest wins per app: waiting one superseded", screen, []step{
			{0, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; next=-"},
			{1, request(req("b1", "bg", Background).restore()), "b1 queued:busy; next=-"},
			{2, request(req("b2", "bg", Background).restore()), "b1 superseded; b2 queued:busy; next=-"},
		}},
		{"throttle coalesces, never drops", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{100, request(req("r2", "fg", Foreground)), "r2 queued:throttle; next=300"},
			{200, request(req("r3", "fg", Foreground)), "r2 superseded; r3 queued:throttle; next=300"},
			{300, tick, "main show r3; r3 shown; r1 hidden:superseded; next=-"},
			{400, request(req("r4", "fg", Foreground)), "r4 queued:throttle; next=600"},
			{600, tick, "main show r4; r4 shown; r3 hidden:superseded; next=-"},
		}},
		{"throttle is per surface", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{0, request(req("l1", "fg", Foreground).on("led")), "led show l1; l1 shown; next=-"},
			{10, request(req("l2", "fg", Foreground).on("led")), "led show l2; l2 shown; l1 hidden:superseded; next=-"},
		}},
		{"a clear is throttled too", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{100, clearOut("fg", "main"), "next=300"},
			{300, tick, "main clear; r1 hidden:cleared; next=-"},
		}},
		{"throttled winner cancelled before the interval ends", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{100, request(req("s1", "sys", System)), "s1 queued:throttle; next=300"},
			{200, cancel("sys", "s1"), "s1 cleared; next=-"},
			{300, tick, "next=-"},
		}},
		{"loser decided when the interval ends", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{100, request(req("s1", "sys", System)), "s1 queued:throttle; next=300"},
			{150, request(req("f2", "fg", Foreground)), "f2 queued:throttle; next=300"},
			{300, tick, "main show s1; s1 shown; r1 hidden:superseded; f2 rejected:busy; next=-"},
		}},
		{"TTL expiry clears and re-arbitrates", screen, []step{
			{0, request(req("r1", "fg", Foreground).ttl(time.Second)), "main show r1; r1 shown; next=1000"},
			{999, tick, "next=1000"},
			{1000, tick, "main clear; r1 hidden:expired; next=-"},
		}},
		{"TTL expiry under the throttle waits for the interval", glasses, []step{
			{0, request(req("r1", "fg", Foreground).ttl(100 * time.Millisecond)), "main show r1; r1 shown; next=100"},
			{100, tick, "next=300"},
			{300, tick, "main clear; r1 hidden:expired; next=-"},
		}},
		{"restore on resume after the preemptor ends", screen, []step{
			{0, request(req("f1", "fg", Foreground).ttl(10 * time.Second).restore()), "main show f1; f1 shown; next=10000"},
			{1000, request(req("s1", "sys", System).ttl(3 * time.Second)), "main show s1; s1 shown; f1 hidden:preempted pending; next=4000"},
			{4000, tick, "main show f1; f1 restored; s1 hidden:expired; next=10000"},
			{10000, tick, "main clear; f1 hidden:expired; next=-"},
		}},
		{"restore also when the preemptor's app ends", screen, []step{
			{0, request(req("f1", "fg", Foreground).restore()), "main show f1; f1 shown; next=-"},
			{1, request(req("s1", "sys", System)), "main show s1; s1 shown; f1 hidden:preempted pending; next=-"},
			{2, ended("sys"), "main show f1; f1 restored; s1 hidden:cleared; next=-"},
		}},
		{"no restore without restore", screen, []step{
			{0, request(req("f1", "fg", Foreground).ttl(10 * time.Second)), "main show f1; f1 shown; next=10000"},
			{1000, request(req("s1", "sys", System).ttl(3 * time.Second)), "main show s1; s1 shown; f1 hidden:preempted; next=4000"},
			{4000, tick, "main clear; s1 hidden:expired; next=-"},
		}},
		{"no restore once its TTL ran out while preempted", screen, []step{
			{0, request(req("f1", "fg", Foreground).ttl(2 * time.Second).restore()), "main show f1; f1 shown; next=2000"},
			{1000, request(req("s1", "sys", System).ttl(3 * time.Second)), "main show s1; s1 shown; f1 hidden:preempted pending; next=2000"},
			{2000, tick, "f1 hidden:expired; next=4000"},
			{4000, tick, "main clear; s1 hidden:expired; next=-"},
		}},
		{"boot queue: queued, expired while queued, decided at boot end", booting, []step{
			{0, request(req("f1", "fg", Foreground)), "f1 queued:boot; next=-"},
			{10, request(req("b1", "bg", Background).ttl(time.Second)), "b1 queued:boot; next=1010"},
			{20, request(req("a1", "amb", Ambient).restore()), "a1 queued:boot; next=1010"},
			{30, request(req("b2", "bg2", Background)), "b2 queued:boot; next=1010"},
			{1010, tick, "b1 expired; next=-"},
			{2000, bootDone, "main show f1; f1 shown; a1 queued:busy; b2 rejected:busy; next=-"},
		}},
		{"force skips the throttle", glasses, []step{
			{0, request(req("r1", "fg", Foreground)), "main show r1; r1 shown; next=-"},
			{100, request(req("r2", "fg", Foreground).force()), "main show r2; r2 shown; r1 hidden:superseded; next=-"},
		}},
		{"force skips only the throttle, not priority", glasses, []step{
			{0, request(req("s1", "sys", System)), "main show s1; s1 shown; next=-"},
			{100, request(req("f1", "fg", Foreground).force()), "f1 rejected:busy; next=-"},
		}},
		{"background lease: held while busy, released when idle", screen, []step{
			{0, request(req("b1", "bgA", Background)), "main show b1; b1 shown; next=-"},
			{4000, request(req("x1", "bgB", Background)), "x1 rejected:busy retry=6s; next=-"},
			{5000, request(req("x2", "bgB", Background).restore()), "x2 queued:busy; next=10000"},
			{6000, request(req("b2", "bgA", Background)), "main show b2; b2 shown; b1 hidden:superseded; next=16000"},
			{16000, tick, "main show x2; x2 shown; b2 hidden:preempted; next=-"},
		}},
		{"background lease covers the holder's request queued behind the throttle", glasses, []step{
			{0, request(req("b1", "bgA", Background)), "main show b1; b1 shown; next=-"},
			{100, request(req("b2", "bgA", Background)), "b2 queued:throttle; next=300"},
			{150, request(req("x1", "bgB", Background).restore()), "x1 queued:throttle; next=300"},
			{300, tick, "main show b2; b2 shown; b1 hidden:superseded; x1 queued:busy; next=10300"},
			{10300, tick, "main show x1; x1 shown; b2 hidden:preempted; next=-"},
		}},
		{"background lease does not hold against a higher class", screen, []step{
			{0, request(req("b1", "bgA", Background)), "main show b1; b1 shown; next=-"},
			{1, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; b1 hidden:preempted; next=-"},
		}},
		{"cancel a waiting request", screen, []step{
			{0, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; next=-"},
			{1, request(req("b1", "bg", Background).restore()), "b1 queued:busy; next=-"},
			{2, cancel("bg", "b1"), "b1 cleared; next=-"},
			{3, cancel("bg", "b1"), "next=-"},
		}},
		{"cancel by another app does nothing", screen, []step{
			{0, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; next=-"},
			{1, cancel("evil", "f1"), "next=-"},
		}},
		{"clear a shown request", screen, []step{
			{0, request(req("f1", "fg", Foreground)), "main show f1; f1 shown; next=-"},
			{1, clearOut("fg", "main"), "main clear; f1 hidden:cleared; next=-"},
		}},
		{"app ended: every surface, every state", glasses, []step{
			{0, request(req("s1", "sys", System)), "main show s1; s1 shown; next=-"},
			{1, request(req("f1", "fg", Foreground).restore()), "f1 queued:busy; next=-"},
			{2, request(req("l1", "fg", Foreground).on("led")), "led show l1; l1 shown; next=-"},
			{3, ended("fg"), "led clear; f1 cleared; l1 hidden:cleared; next=-"},
			{4, ended("fg"), "next=-"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				if got := format(s.do(a, at(s.at))); got != s.want {
					t.Fatalf("step %d at %d ms:\n got %s\nwant %s", i, s.at, got, s.want)
				}
			}
		})
	}
}

func TestFull(t *testing.T) {
	cfg := screen
	cfg.MaxWaiting = 2
	a, _ := New(cfg)
	steps := []step{
		{0, request(req("s1", "sys", System)), "main show s1; s1 shown; next=-"},
		{1, request(req("a1", "amb1", Ambient).restore()), "a1 queued:busy; next=-"},
		{2, request(req("a2", "amb2", Ambient).restore()), "a2 queued:busy; next=-"},
		{3, request(req("a3", "amb3", Ambient).restore()), "a3 rejected:full; next=-"},
		{4, request(req("a4", "amb1", Ambient).restore()), "a1 superseded; a4 queued:busy; next=-"}, // replacing one's own is always allowed
	}
	for i, s := range steps {
		if got := format(s.do(a, at(s.at))); got != s.want {
			t.Fatalf("step %d:\n got %s\nwant %s", i, got, s.want)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{
		{},
		{Surfaces: []Surface{{"", 0}}},
		{Surfaces: []Surface{{"main", -1}}},
		{Surfaces: []Surface{{"main", 0}, {"main", 0}}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v): got nil error", c)
		}
	}
}

func TestMetricsCountEveryEvent(t *testing.T) {
	var counts Counts
	cfg := glasses
	cfg.Metrics = &counts
	a, _ := New(cfg)
	var events int
	for _, o := range []Output{
		a.Request(at(0), req("r1", "fg", Foreground)),
		a.Request(at(100), req("r2", "fg", Foreground)),
		a.Request(at(150), req("r3", "fg", Foreground)),
		a.Request(at(160), req("b1", "bg", Background)),
		a.Tick(at(300)),
	} {
		events += len(o.Events)
	}
	got := counts.Snapshot()
	want := map[CountKey]uint64{
		{Shown, ""}: 2, {Queued, ReasonThrottle}: 3, {Superseded, ""}: 1,
		{Hidden, ReasonSuperseded}: 1, {Rejected, ReasonBusy}: 1,
	}
	var total uint64
	for k, n := range got {
		total += n
		if want[k] != n {
			t.Errorf("%v/%s: got %d, want %d", k.Kind, k.Reason, n, want[k])
		}
	}
	if total != uint64(events) || len(got) != len(want) {
		t.Errorf("counted %d events in %d series, want %d in %d", total, len(got), events, len(want))
	}
}

func TestClassNames(t *testing.T) {
	for c := Ambient; c <= System; c++ {
		if got, err := ParseClass(c.String()); err != nil || got != c {
			t.Errorf("ParseClass(%q): got %v, %v", c.String(), got, err)
		}
	}
	if _, err := ParseClass("urgent"); err == nil {
		t.Error("ParseClass(urgent): got nil error")
	}
}

func TestPrometheusCounts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	cfg := screen
	cfg.Metrics = NewPrometheus(reg)
	a, _ := New(cfg)
	a.Request(at(0), req("f1", "fg", Foreground))
	a.Request(at(1), req("b1", "bg", Background))
	a.Request(at(2), req("b2", "bg2", Background))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "junction_output_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				key += l.GetName() + "=" + l.GetValue() + " "
			}
			got[key] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"kind=shown reason= ": 1, "kind=rejected reason=busy ": 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// BenchmarkDecisions measures arbiter inputs per second: a mix of requests
// from four apps of different classes on two surfaces, with ticks.
func BenchmarkDecisions(b *testing.B) {
	a, err := New(glasses)
	if err != nil {
		b.Fatal(err)
	}
	apps := []struct {
		name  string
		class Class
	}{{"sys", System}, {"fg", Foreground}, {"bg", Background}, {"amb", Ambient}}
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprint("r", i)
	}
	now := t0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(37 * time.Millisecond)
		app := apps[i%len(apps)]
		r := Request{ID: ids[i%len(ids)] + app.name, App: app.name, Class: app.class, Surface: "main", TTL: time.Second, Restore: i%3 == 0}
		if i%2 == 1 {
			r.Surface = "led"
		}
		a.Request(now, r)
		if i%4 == 3 {
			a.Tick(now)
		}
	}
}
