package store

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestSchedules(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, err := db.CreateSchedule(ctx, "b", []byte(`{"name":"b"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateSchedule(ctx, "a", []byte(`{"name":"a"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.CreateSchedule(ctx, "a", []byte(`{}`)); !errors.Is(err, ErrDuplicate) {
			t.Fatalf("second a: %v, want ErrDuplicate", err)
		}
		got, err := db.Schedules(ctx)
		if err != nil || len(got) != 2 || got[0].Name != "a" || string(got[1].Spec) != `{"name":"b"}` || got[0].CreatedAt.IsZero() {
			t.Fatalf("Schedules: %+v, %v; want a then b", got, err)
		}

		// History: bounded per job, newest first, with every field.
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		for i := range 5 {
			run := ScheduleRun{Job: "a", Trigger: "schedule", Tick: t0.Add(time.Duration(i) * time.Minute), Node: "n1",
				StartedAt: t0.Add(time.Duration(i) * time.Minute), FinishedAt: t0.Add(time.Duration(i)*time.Minute + time.Second),
				OK: i%2 == 0, Result: []byte(fmt.Sprintf(`{"i":%d}`, i))}
			if !run.OK {
				run.Error = []byte(`{"code":"unavailable"}`)
			}
			if _, err := db.RecordScheduleRun(ctx, run, 3); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.RecordScheduleRun(ctx, ScheduleRun{Job: "b", Trigger: "manual", Node: "n2", StartedAt: t0, FinishedAt: t0, OK: true}, 3); err != nil {
			t.Fatal(err)
		}
		runs, err := db.ScheduleRuns(ctx, "a", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 3 {
			t.Fatalf("runs of a: %d, want 3 (keep)", len(runs))
		}
		for i, r := range runs {
			n := 4 - i
			if !r.Tick.Equal(t0.Add(time.Duration(n)*time.Minute)) || string(r.Result) != fmt.Sprintf(`{"i":%d}`, n) || r.OK != (n%2 == 0) ||
				r.Node != "n1" || r.Trigger != "schedule" || r.ID == "" || !r.FinishedAt.Equal(r.StartedAt.Add(time.Second)) {
				t.Errorf("run %d: %+v, want run %d", i, r, n)
			}
			if !r.OK && string(r.Error) != `{"code":"unavailable"}` {
				t.Errorf("run %d: error %s", i, r.Error)
			}
		}
		if runs, err := db.ScheduleRuns(ctx, "a", 1); err != nil || len(runs) != 1 {
			t.Errorf("limit 1: %d runs, %v", len(runs), err)
		}
		b, err := db.ScheduleRuns(ctx, "b", 10)
		if err != nil || len(b) != 1 || !b[0].Tick.IsZero() || b[0].Error != nil || b[0].Result != nil {
			t.Fatalf("runs of b: %+v, %v; want one manual run without tick, error or result", b, err)
		}

		if err := db.DeleteSchedule(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteSchedule(ctx, "a"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("delete a twice: %v, want ErrNotFound", err)
		}
		if runs, _ := db.ScheduleRuns(ctx, "a", 0); len(runs) != 0 {
			t.Errorf("a's history after delete: %d runs, want none", len(runs))
		}
		if got, _ := db.Schedules(ctx); len(got) != 1 || got[0].Name != "b" {
			t.Errorf("after delete: %+v, want b", got)
		}
	})
}
