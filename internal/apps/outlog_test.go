package apps

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/arbiter"
	"github.com/junctionhq/junction/protocol"
)

// outcomeLines renders a device's record, newest first, as
// "app/session/request surface priority outcome[ reason][ ended=reason]".
func outcomeLines(l *outcomeLog, device string) string {
	var out []string
	for _, o := range l.list(device, 0) {
		s := fmt.Sprintf("%s/%s/%s %s %s %s", o.AppID, o.SessionID, o.RequestID, o.Surface, o.Priority, o.Outcome)
		if o.Reason != "" {
			s += " " + o.Reason
		}
		if o.EndedAt != nil {
			s += " ended=" + o.EndReason
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n")
}

// recRequest is request with the gateway's note for the record.
func recRequest(t *testing.T, x *devExec, sid, app, id, surface string, class arbiter.Class, restore bool) {
	t.Helper()
	err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		x.apps[sid] = app
		r := arbiter.Request{ID: sid + "/" + id, App: sid, Class: class, Surface: surface, Content: []byte(`"` + id + `"`), Restore: restore}
		x.noteRequest(r, app, class.String(), now)
		return a.Request(now, r)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExecRecordsOutcomes: the executor records each request's one
// terminal outcome with the app, priority and times the gateway noted; a
// shown request gets its end (the final hidden, not a pending one); a
// rejected duplicate is recorded as itself and leaves the live request's
// record alone; the device going ends the rest with device_gone.
func TestExecRecordsOutcomes(t *testing.T) {
	x, clk, rec := startExec(t, arbiter.Config{Surfaces: []arbiter.Surface{{Name: "main"}}})
	// startExec starts run at once; outcomes must be set before any input,
	// which the first do orders after this write.
	log := newOutcomeLog(outcomesPerDevice, outcomeDevices)
	if err := x.do(context.Background(), func(*arbiter.Arbiter, time.Time) arbiter.Output {
		x.outcomes = log
		return arbiter.Output{}
	}); err != nil {
		t.Fatal(err)
	}
	t0 := clk.Now()
	recRequest(t, x, "s1", "com.fg", "a", "main", arbiter.Foreground, true)
	rec.expect(t, `device show main com.fg s1/a "a"`, "app s1: a main shown")
	clk.Advance(time.Second)
	recRequest(t, x, "s2", "com.sys", "alert", "main", arbiter.System, false)
	rec.expect(t, `device show main com.sys s2/alert "alert"`, "app s2: alert main shown", "app s1: a main hidden preempted pending")
	recRequest(t, x, "s1", "com.fg", "a", "main", arbiter.Foreground, false)
	rec.expect(t, "app s1: a main rejected duplicate final")
	recRequest(t, x, "s1", "com.fg", "x", "nope", arbiter.Foreground, false)
	rec.expect(t, "app s1: x nope rejected unknown_surface final")
	want := strings.Join([]string{
		"com.fg/s1/x nope foreground rejected unknown_surface",
		"com.fg/s1/a main foreground rejected duplicate",
		"com.sys/s2/alert main system shown",
		"com.fg/s1/a main foreground shown", // pending: not ended yet
	}, "\n")
	if got := outcomeLines(log, "dev1"); got != want {
		t.Fatalf("record:\n%s\nwant:\n%s", got, want)
	}
	if first := log.list("dev1", 0)[3]; !first.RequestedAt.Equal(t0) || !first.DecidedAt.Equal(t0) {
		t.Errorf("first outcome times %v / %v, want both %v", first.RequestedAt, first.DecidedAt, t0)
	}

	// The system session ends: its alert leaves for good (cleared), the
	// foreground request comes back; then the device goes.
	clk.Advance(time.Second)
	if err := x.do(context.Background(), func(a *arbiter.Arbiter, now time.Time) arbiter.Output {
		delete(x.apps, "s2")
		return a.AppEnded(now, "s2")
	}); err != nil {
		t.Fatal(err)
	}
	rec.expect(t, `device show main com.fg s1/a "a"`, "app s1: a main restored", "app s2: alert main hidden cleared final")
	recRequest(t, x, "s3", "com.bg", "b", "main", arbiter.Background, true)
	rec.expect(t, "app s3: b main queued busy")
	x.stop(ReasonDeviceGone)
	<-x.done
	want = strings.Join([]string{
		"com.bg/s3/b main background cleared device_gone",
		"com.fg/s1/x nope foreground rejected unknown_surface",
		"com.fg/s1/a main foreground rejected duplicate",
		"com.sys/s2/alert main system shown ended=cleared",
		"com.fg/s1/a main foreground shown ended=device_gone",
	}, "\n")
	if got := outcomeLines(log, "dev1"); got != want {
		t.Fatalf("record:\n%s\nwant:\n%s", got, want)
	}
	alert := log.list("dev1", 0)[3]
	if alert.EndedAt == nil || !alert.EndedAt.Equal(t0.Add(2*time.Second)) || !alert.DecidedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("alert = %+v; want decided at +1s, ended at +2s", alert)
	}
	if len(x.meta) != 0 {
		t.Errorf("%d request notes left after the end", len(x.meta))
	}
}

// TestOutcomeLogBounds: each device keeps its last per outcomes, newest
// first; beyond max devices the one written least recently is forgotten;
// limit cuts the list.
func TestOutcomeLogBounds(t *testing.T) {
	l := newOutcomeLog(3, 2)
	for i := range 5 {
		l.add("d1", protocol.OutputOutcome{RequestID: fmt.Sprint(i), Outcome: "shown"})
	}
	l.add("d2", protocol.OutputOutcome{RequestID: "x", Outcome: "expired"})
	var ids []string
	for _, o := range l.list("d1", 0) {
		ids = append(ids, o.RequestID)
	}
	if got := strings.Join(ids, ","); got != "4,3,2" {
		t.Fatalf("d1 = %s, want 4,3,2", got)
	}
	if got := l.list("d1", 2); len(got) != 2 || got[0].RequestID != "4" {
		t.Fatalf("d1 limit 2 = %+v", got)
	}
	// The end of a forgotten request is ignored; of a kept one, noted once.
	l.ended("d1", "", "0", time.Unix(1, 0), "expired")
	l.ended("d1", "", "3", time.Unix(2, 0), "preempted")
	l.ended("d1", "", "3", time.Unix(3, 0), "cleared")
	if o := l.list("d1", 0)[1]; o.EndedAt == nil || !o.EndedAt.Equal(time.Unix(2, 0)) || o.EndReason != "preempted" {
		t.Fatalf("ended = %+v, want preempted at 2s", o)
	}
	l.add("d3", protocol.OutputOutcome{RequestID: "y"}) // d1 was written before d2: forgotten
	if got := l.list("d1", 0); len(got) != 0 {
		t.Fatalf("d1 after eviction = %+v, want nothing", got)
	}
	if len(l.list("d2", 0)) != 1 || len(l.list("d3", 0)) != 1 {
		t.Fatal("d2 and d3 must be kept")
	}
	if got := l.list("unknown", 0); got == nil || len(got) != 0 {
		t.Fatalf("unknown device = %#v, want an empty list", got)
	}
}
