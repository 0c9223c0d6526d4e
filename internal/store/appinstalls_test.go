package store

import (
	"slices"
	"testing"
	"time"
)

// TestInstallsOfAppWithActivity: an app's installations in user id order,
// paged, each with its user's active sessions of that app (not another
// app's, not another user's, not stopped ones) and the latest session.
func TestInstallsOfAppWithActivity(t *testing.T) {
	clock := newClock()
	eachBackend(t, Options{Now: clock.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		for _, id := range []string{"com.example.a", "com.example.b"} {
			if _, _, err := db.CreateApp(ctx, testApp(id), AppKey{ID: "k-" + id, MAC: HashToken(id)}); err != nil {
				t.Fatal(err)
			}
		}
		t0 := clock.Now()
		for _, u := range []string{"u2", "u1", "u3"} {
			if _, _, err := db.PutInstall(ctx, "com.example.a", u, []string{"read"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := db.PutInstall(ctx, "com.example.b", "u1", []string{"read"}); err != nil {
			t.Fatal(err)
		}
		n := 0
		session := func(app, user, state string) time.Time {
			t.Helper()
			n++
			clock.Advance(time.Second)
			s, err := db.CreateAppSession(ctx, AppSession{ID: "s" + string(rune('a'+n)), AppID: app, UserID: user, DeviceID: "d-" + user, Kind: "foreground",
				State: "starting", TicketHash: HashToken("t"), TicketExpiresAt: clock.Now().Add(time.Minute)})
			if err != nil {
				t.Fatal(err)
			}
			if state != "starting" {
				if _, _, err := db.SetAppSessionState(ctx, s.ID, "starting", state, "", "", ""); err != nil {
					t.Fatal(err)
				}
			}
			return s.CreatedAt
		}
		session("com.example.a", "u1", "running")
		session("com.example.a", "u1", "stopped")
		u1Last := session("com.example.a", "u1", "starting")
		u2Last := session("com.example.a", "u2", "stopped")
		session("com.example.b", "u3", "running") // another app: not u3's activity of a

		got, more, err := db.InstallsOfAppWithActivity(ctx, "com.example.a", "", 2)
		if err != nil || !more || len(got) != 2 {
			t.Fatalf("page 1 = %+v, %v, %v; want 2 and more", got, more, err)
		}
		if got[0].UserID != "u1" || got[0].ActiveSessions != 2 || !got[0].LastSessionAt.Equal(u1Last) || !slices.Equal(got[0].Scopes, []string{"read"}) ||
			!got[0].CreatedAt.Equal(t0) || got[0].AppID != "com.example.a" {
			t.Errorf("u1 = %+v; want 2 active sessions, last at %v, installed at %v", got[0], u1Last, t0)
		}
		if got[1].UserID != "u2" || got[1].ActiveSessions != 0 || !got[1].LastSessionAt.Equal(u2Last) {
			t.Errorf("u2 = %+v; want no active session, last at %v", got[1], u2Last)
		}
		got, more, err = db.InstallsOfAppWithActivity(ctx, "com.example.a", "u2", 0)
		if err != nil || more || len(got) != 1 || got[0].UserID != "u3" || got[0].ActiveSessions != 0 || !got[0].LastSessionAt.IsZero() {
			t.Fatalf("page 2 = %+v, %v, %v; want u3 alone, never started", got, more, err)
		}
		got, more, err = db.InstallsOfAppWithActivity(ctx, "com.example.none", "", 0)
		if err != nil || more || len(got) != 0 {
			t.Fatalf("unknown app = %+v, %v, %v; want none", got, more, err)
		}
		_, _, err = db.InstallsOfAppWithActivity(ctx, "com.example.a", "", MaxPageLimit+1)
		wantErr(t, "over the page limit", err, ErrInvalid)
	})
}
