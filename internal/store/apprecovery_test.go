package store

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestAppSessionRecovery: fenced moves (state, epoch), the claim that
// bumps the epoch only when the owner changes, a resurrection's new
// ticket, the due timers by owner and orphan age, and the claim a node
// makes when it starts.
func TestAppSessionRecovery(t *testing.T) {
	clock := newClock()
	eachBackend(t, Options{Now: clock.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, _, err := db.CreateApp(ctx, testApp("com.example.rec"), AppKey{ID: "k1", MAC: HashToken("m")}); err != nil {
			t.Fatal(err)
		}
		now := clock.Now()
		mk := func(id, node string, due time.Time) AppSession {
			t.Helper()
			s, err := db.CreateAppSession(ctx, AppSession{ID: id, AppID: "com.example.rec", UserID: "u1", DeviceID: "d-" + id, Kind: "foreground",
				State: "starting", TicketHash: HashToken("t-" + id), TicketExpiresAt: now.Add(time.Minute), Node: node, DueAt: due})
			if err != nil || !s.DueAt.Equal(due) {
				t.Fatalf("CreateAppSession %s = %+v, %v", id, s, err)
			}
			return s
		}
		a := mk("as-a", "n1", now.Add(time.Minute))
		if _, err := db.UseAppSessionTicket(ctx, a.ID, now); err != nil {
			t.Fatal(err)
		}

		// running → transport_down with a grace timer.
		grace := now.Add(30 * time.Second)
		s, changed, err := db.MoveAppSession(ctx, a.ID, AppSessionMove{From: []string{"running"}, State: "transport_down", DueAt: grace, Claim: true, Node: "n1"})
		if err != nil || !changed || s.State != "transport_down" || !s.DueAt.Equal(grace) || s.Epoch != 1 {
			t.Fatalf("lost app = %+v, %v, %v: want transport_down, due at grace, epoch 1 (same owner)", s, changed, err)
		}
		// A move from another state, or with a stale epoch, changes nothing.
		if s, changed, err = db.MoveAppSession(ctx, a.ID, AppSessionMove{From: []string{"dormant"}, State: "resurrecting"}); err != nil || changed || s.State != "transport_down" {
			t.Fatalf("move from the wrong state = %+v, %v, %v", s, changed, err)
		}
		if s, changed, err = db.MoveAppSession(ctx, a.ID, AppSessionMove{Epoch: 7, State: "resurrecting"}); err != nil || changed || s.State != "transport_down" {
			t.Fatalf("move with a stale epoch = %+v, %v, %v", s, changed, err)
		}
		// Another node claims it: a new epoch; resurrecting with a new ticket.
		since := now.Add(31 * time.Second)
		hash := HashToken("t-new")
		s, changed, err = db.MoveAppSession(ctx, a.ID, AppSessionMove{From: []string{"transport_down"}, Epoch: 1, Claim: true, Node: "n2",
			State: "resurrecting", DueAt: since, RecoverSince: &since, Attempts: 1, TicketHash: hash, TicketExpiresAt: since.Add(time.Minute),
			SetFailure: true, Stage: "webhook", Error: "503"})
		if err != nil || !changed || s.Node != "n2" || s.Epoch != 2 || s.State != "resurrecting" || !s.RecoverSince.Equal(since) || s.Attempts != 1 ||
			!bytes.Equal(s.TicketHash, hash) || !s.TicketUsedAt.IsZero() || s.Stage != "webhook" || s.Error != "503" {
			t.Fatalf("claim and resurrect = %+v, %v, %v", s, changed, err)
		}
		// KeepDue leaves the timer; SetFailure with nothing clears the failure.
		if s, _, err = db.MoveAppSession(ctx, a.ID, AppSessionMove{KeepDue: true, SetFailure: true}); err != nil || !s.DueAt.Equal(since) || s.Stage != "" || s.Error != "" {
			t.Fatalf("keep due, clear failure = %+v, %v", s, err)
		}
		// The new ticket brings the session back to running.
		if s, err = db.UseAppSessionTicket(ctx, a.ID, since); err != nil || s.State != "running" || !s.DueAt.IsZero() || s.Attempts != 0 {
			t.Fatalf("ticket of a resurrection = %+v, %v", s, err)
		}

		// Due timers: n1's own, and others' once overdue past the orphan age.
		b := mk("as-b", "n1", now.Add(time.Second))
		c := mk("as-c", "n9", now.Add(2*time.Second))
		mk("as-d", "n1", now.Add(time.Hour))
		at := now.Add(5 * time.Second)
		due, err := db.DueAppSessions(ctx, at, "n1", at.Add(-time.Minute), 10)
		if err != nil || len(due) != 1 || due[0].ID != b.ID {
			t.Fatalf("DueAppSessions of n1 = %+v, %v: want only as-b", due, err)
		}
		at = now.Add(2 * time.Minute)
		due, err = db.DueAppSessions(ctx, at, "n1", at.Add(-time.Minute), 10)
		if ids := idsOf(due); err != nil || !slices.Equal(ids, []string{b.ID, c.ID}) {
			t.Fatalf("DueAppSessions with orphans = %v, %v: want as-b and as-c (n9's, overdue)", ids, err)
		}
		// Stopped sessions have no timers.
		if _, _, err := db.SetAppSessionState(ctx, b.ID, "", "stopped", "app_error", "", ""); err != nil {
			t.Fatal(err)
		}
		due, err = db.DueAppSessions(ctx, at, "n1", at.Add(-time.Minute), 10)
		if ids := idsOf(due); err != nil || !slices.Equal(ids, []string{c.ID}) {
			t.Fatalf("DueAppSessions after a stop = %v, %v", ids, err)
		}

		// Sessions of a state, every app's, paged by id.
		for _, id := range []string{"as-d", "as-c"} {
			if _, _, err := db.MoveAppSession(ctx, id, AppSessionMove{State: "dormant", KeepDue: true}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := db.AppSessionsInState(ctx, "dormant", "", 1)
		if ids := idsOf(page); err != nil || !slices.Equal(ids, []string{"as-c"}) {
			t.Fatalf("AppSessionsInState first page = %v, %v", ids, err)
		}
		page, err = db.AppSessionsInState(ctx, "dormant", "as-c", 10)
		if ids := idsOf(page); err != nil || !slices.Equal(ids, []string{"as-d"}) {
			t.Fatalf("AppSessionsInState next page = %v, %v", ids, err)
		}

		// The dormant sessions of several devices in one query: not another
		// state's (as-b stopped, as-a transport_down), nor unknown devices'.
		of, err := db.AppSessionsOfDevicesInState(ctx, "dormant", []string{"d-as-d", "d-nobody", "d-as-a", "d-as-c", "d-as-b"})
		if ids := idsOf(of); err != nil || !slices.Equal(ids, []string{"as-c", "as-d"}) {
			t.Fatalf("AppSessionsOfDevicesInState = %v, %v: want as-c, as-d", ids, err)
		}
		if of, err := db.AppSessionsOfDevicesInState(ctx, "dormant", nil); err != nil || len(of) != 0 {
			t.Fatalf("AppSessionsOfDevicesInState of no device = %v, %v", of, err)
		}
		// The list is one parameter: the same answer at every length up
		// to the bound, wherever the devices stand in it, whatever bytes
		// the other ids hold.
		for _, n := range []int{1, 2, 9, 100, MaxDevicesPerQuery} {
			for _, at := range []int{0, n / 2, n - 1} {
				ids := make([]string, n)
				for i := range ids {
					ids[i] = fmt.Sprintf("d-\"nobody\\%d\u00e9'", i)
				}
				ids[at] = "d-as-c"
				want := []string{"as-c"}
				if n > 1 {
					ids[(at+1)%n] = "d-as-d"
					want = append(want, "as-d")
				}
				of, err := db.AppSessionsOfDevicesInState(ctx, "dormant", ids)
				if got := idsOf(of); err != nil || !slices.Equal(got, want) {
					t.Fatalf("AppSessionsOfDevicesInState of %d devices (as-c's at %d) = %v, %v: want %v", n, at, got, err, want)
				}
			}
		}
		if _, err := db.AppSessionsOfDevicesInState(ctx, "dormant", make([]string, MaxDevicesPerQuery+1)); err == nil {
			t.Fatalf("AppSessionsOfDevicesInState of %d devices: no error", MaxDevicesPerQuery+1)
		}

		// A node starting claims its own sessions (a running one goes
		// transport_down with its grace); a solo node claims them all.
		end := now.Add(time.Hour)
		n, err := db.ClaimAppSessions(ctx, "n2", false, end)
		if err != nil || n != 1 {
			t.Fatalf("ClaimAppSessions n2 = %d, %v: want 1 (as-a)", n, err)
		}
		s, _ = db.AppSessionByID(ctx, a.ID)
		if s.State != "transport_down" || !s.DueAt.Equal(end) || s.Epoch != 3 {
			t.Fatalf("claimed running session = %+v: want transport_down, due at the end of grace, epoch 3", s)
		}
		n, err = db.ClaimAppSessions(ctx, "n3", true, end)
		if err != nil || n != 3 { // as-a, as-c, as-d; not the stopped as-b
			t.Fatalf("solo ClaimAppSessions = %d, %v: want 3", n, err)
		}
		s, _ = db.AppSessionByID(ctx, c.ID)
		if s.Node != "n3" || s.Epoch != 2 || s.State != "dormant" || !s.DueAt.Equal(now.Add(2*time.Second)) {
			t.Fatalf("claimed dormant session = %+v: want n3, epoch 2, its state and timer kept", s)
		}
	})
}

func idsOf(ss []AppSession) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.ID)
	}
	return out
}
