package store

import (
	"bytes"
	"slices"
	"testing"
	"time"
)

func TestAppWebhooks(t *testing.T) {
	clock := newClock()
	eachBackend(t, Options{Now: clock.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, _, err := db.CreateApp(ctx, testApp("com.example.hooks"), AppKey{ID: "k1", MAC: HashToken("m")}); err != nil {
			t.Fatal(err)
		}
		_, err := db.AppWebhookOf(ctx, "com.example.hooks")
		wantErr(t, "AppWebhookOf before any secret", err, ErrNotFound)
		_, err = db.PutAppWebhook(ctx, "com.example.none", []byte("s"), time.Time{}, false, true)
		wantErr(t, "PutAppWebhook of an unknown app", err, ErrNotFound)

		w, err := db.PutAppWebhook(ctx, "com.example.hooks", []byte("s1"), time.Time{}, true, true)
		if err != nil || !w.Internal || string(w.Sealed) != "s1" || len(w.Prev) != 0 || !w.PrevUntil.IsZero() {
			t.Fatalf("first PutAppWebhook = %+v, %v", w, err)
		}
		// A rotation with overlap keeps the previous secret; internal is
		// kept when not set.
		until := clock.Now().Add(time.Hour)
		w, err = db.PutAppWebhook(ctx, "com.example.hooks", []byte("s2"), until, false, false)
		if err != nil || !w.Internal || string(w.Sealed) != "s2" || string(w.Prev) != "s1" || !w.PrevUntil.Equal(until) {
			t.Fatalf("rotation = %+v, %v", w, err)
		}
		// Without overlap the previous one is dropped; internal changes.
		w, err = db.PutAppWebhook(ctx, "com.example.hooks", []byte("s3"), time.Time{}, false, true)
		if err != nil || w.Internal || string(w.Sealed) != "s3" || len(w.Prev) != 0 || !w.PrevUntil.IsZero() {
			t.Fatalf("rotation without overlap = %+v, %v", w, err)
		}
		got, err := db.AppWebhookOf(ctx, "com.example.hooks")
		if err != nil || string(got.Sealed) != "s3" {
			t.Fatalf("AppWebhookOf = %+v, %v", got, err)
		}
		// Deleting the app deletes its secret.
		if _, err := db.DeleteApp(ctx, "com.example.hooks"); err != nil {
			t.Fatal(err)
		}
		_, err = db.AppWebhookOf(ctx, "com.example.hooks")
		wantErr(t, "AppWebhookOf after the app's deletion", err, ErrNotFound)
	})
}

func TestAppSessions(t *testing.T) {
	clock := newClock()
	eachBackend(t, Options{Now: clock.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, _, err := db.CreateApp(ctx, testApp("com.example.sess"), AppKey{ID: "k1", MAC: HashToken("m")}); err != nil {
			t.Fatal(err)
		}
		hash := HashToken("ticket")
		in := AppSession{ID: "as1", AppID: "com.example.sess", UserID: "u1", DeviceID: "d1", Kind: "foreground", State: "starting",
			Capabilities: []string{"display"}, TicketHash: hash, TicketExpiresAt: clock.Now().Add(time.Minute), Node: "n1"}
		s, err := db.CreateAppSession(ctx, in)
		if err != nil || s.State != "starting" || s.Epoch != 1 || !bytes.Equal(s.TicketHash, hash) || !slices.Equal(s.Capabilities, []string{"display"}) ||
			!s.TicketExpiresAt.Equal(clock.Now().Add(time.Minute)) || !s.TicketUsedAt.IsZero() || s.Node != "n1" {
			t.Fatalf("CreateAppSession = %+v, %v", s, err)
		}
		_, err = db.CreateAppSession(ctx, in)
		wantErr(t, "CreateAppSession duplicate", err, ErrDuplicate)
		bad := in
		bad.ID, bad.AppID = "as2", "com.example.none"
		_, err = db.CreateAppSession(ctx, bad)
		wantErr(t, "CreateAppSession of an unknown app", err, ErrNotFound)

		// The ticket is used once.
		clock.Advance(time.Second)
		s, err = db.UseAppSessionTicket(ctx, "as1", clock.Now())
		if err != nil || s.State != "running" || !s.TicketUsedAt.Equal(clock.Now()) {
			t.Fatalf("UseAppSessionTicket = %+v, %v", s, err)
		}
		_, err = db.UseAppSessionTicket(ctx, "as1", clock.Now())
		wantErr(t, "UseAppSessionTicket twice", err, ErrTicketUsed)

		// from guards the move; stopped is final.
		if _, changed, err := db.SetAppSessionState(ctx, "as1", "starting", "stopped", "app_error", "timeout", "late"); err != nil || changed {
			t.Fatalf("a move from starting of a running session: changed %v, %v", changed, err)
		}
		s, changed, err := db.SetAppSessionState(ctx, "as1", "running", "transport_down", "", "", "")
		if err != nil || !changed || s.State != "transport_down" {
			t.Fatalf("to transport_down = %+v %v, %v", s, changed, err)
		}
		act, err := db.ActiveAppSessionsOfDevice(ctx, "d1")
		if err != nil || len(act) != 1 || act[0].ID != "as1" {
			t.Fatalf("ActiveAppSessionsOfDevice = %+v, %v", act, err)
		}
		act, err = db.ActiveAppSessionsOfUser(ctx, "com.example.sess", "u1")
		if err != nil || len(act) != 1 || act[0].ID != "as1" {
			t.Fatalf("ActiveAppSessionsOfUser = %+v, %v", act, err)
		}
		if act, err := db.ActiveAppSessionsOfUser(ctx, "com.example.sess", "u2"); err != nil || len(act) != 0 {
			t.Fatalf("ActiveAppSessionsOfUser of another user = %+v, %v", act, err)
		}
		s, changed, err = db.SetAppSessionState(ctx, "as1", "", "stopped", "user_stopped", "", "")
		if err != nil || !changed || s.State != "stopped" || s.StopReason != "user_stopped" || s.Stage != "" {
			t.Fatalf("stop = %+v %v, %v", s, changed, err)
		}
		s, changed, err = db.SetAppSessionState(ctx, "as1", "", "stopped", "admin", "", "")
		if err != nil || changed || s.StopReason != "user_stopped" {
			t.Fatalf("second stop = %+v %v, %v; want unchanged", s, changed, err)
		}
		if act, err := db.ActiveAppSessionsOfDevice(ctx, "d1"); err != nil || len(act) != 0 {
			t.Fatalf("active after stop = %+v, %v", act, err)
		}
		// A stopped session's unused ticket: conflict, not used.
		in.ID = "as3"
		if _, err := db.CreateAppSession(ctx, in); err != nil {
			t.Fatal(err)
		}
		if _, _, err := db.SetAppSessionState(ctx, "as3", "starting", "stopped", "app_error", "webhook", "status 500"); err != nil {
			t.Fatal(err)
		}
		_, err = db.UseAppSessionTicket(ctx, "as3", clock.Now())
		wantErr(t, "UseAppSessionTicket of a stopped session", err, ErrConflict)

		page, more, err := db.AppSessionsOfApp(ctx, "com.example.sess", "stopped", "", 1)
		if err != nil || !more || len(page) != 1 || page[0].ID != "as1" {
			t.Fatalf("AppSessionsOfApp page 1 = %+v %v, %v", page, more, err)
		}
		page, more, err = db.AppSessionsOfApp(ctx, "com.example.sess", "stopped", "as1", 1)
		if err != nil || more || len(page) != 1 || page[0].ID != "as3" || page[0].Stage != "webhook" || page[0].Error != "status 500" {
			t.Fatalf("AppSessionsOfApp page 2 = %+v %v, %v", page, more, err)
		}
		if page, _, err := db.AppSessionsOfApp(ctx, "com.example.sess", "running", "", 10); err != nil || len(page) != 0 {
			t.Fatalf("running sessions = %+v, %v", page, err)
		}
	})
}
