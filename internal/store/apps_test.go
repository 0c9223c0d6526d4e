package store

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

func testApp(id string) App {
	return App{ID: id, Name: "Captions", Kind: "foreground", WebhookURL: "https://x.test/hook",
		Scopes: []string{"read", "stream.transcript"}, Priority: "foreground",
		SettingsSchema: json.RawMessage(`{"type":"object"}`), Tools: json.RawMessage(`[{"name":"t"}]`),
		Capabilities: []string{"display"}, Owner: "dev1"}
}

func TestApps(t *testing.T) {
	clock := newClock()
	eachBackend(t, Options{Now: clock.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		mac := HashToken("mac-1")
		a, k, err := db.CreateApp(ctx, testApp("com.example.captions"), AppKey{ID: "k1", MAC: mac, ExpiresAt: clock.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if a.ID != "com.example.captions" || a.Kind != "foreground" || !slices.Equal(a.Scopes, []string{"read", "stream.transcript"}) ||
			string(a.SettingsSchema) != `{"type":"object"}` || string(a.Tools) != `[{"name":"t"}]` || !slices.Equal(a.Capabilities, []string{"display"}) ||
			a.Owner != "dev1" || !a.CreatedAt.Equal(clock.Now()) {
			t.Fatalf("CreateApp = %+v", a)
		}
		if k.AppID != a.ID || !bytes.Equal(k.MAC, mac) || !k.ExpiresAt.Equal(clock.Now().Add(time.Hour)) || !k.RevokedAt.IsZero() {
			t.Fatalf("CreateApp key = %+v", k)
		}
		got, err := db.App(ctx, a.ID)
		if err != nil || got.Name != "Captions" || got.Priority != "foreground" {
			t.Fatalf("App = %+v, %v", got, err)
		}
		_, _, err = db.CreateApp(ctx, testApp("com.example.captions"), AppKey{ID: "k2", MAC: mac})
		wantErr(t, "CreateApp duplicate id", err, ErrDuplicate)
		_, _, err = db.CreateApp(ctx, testApp("com.example.other"), AppKey{ID: "k1", MAC: mac})
		wantErr(t, "CreateApp duplicate key id", err, ErrDuplicate)
		if _, err := db.App(ctx, "com.example.other"); !isErr(err, ErrNotFound) {
			t.Fatalf("a failed CreateApp left the app behind: %v", err)
		}
		bad := testApp("com.example.bad")
		bad.Tools = json.RawMessage(`[`)
		_, _, err = db.CreateApp(ctx, bad, AppKey{ID: "k3", MAC: mac})
		wantErr(t, "CreateApp bad tools", err, ErrInvalid)
		_, _, err = db.CreateApp(ctx, testApp("com.example.nokey"), AppKey{})
		wantErr(t, "CreateApp without key", err, ErrInvalid)
		_, err = db.App(ctx, "nope")
		wantErr(t, "App unknown", err, ErrNotFound)

		// The key lookup of authentication.
		gk, ga, err := db.AppKeyWithApp(ctx, "k1")
		if err != nil || gk.AppID != a.ID || !bytes.Equal(gk.MAC, mac) || ga.ID != a.ID || !slices.Equal(ga.Scopes, a.Scopes) {
			t.Fatalf("AppKeyWithApp = %+v %+v, %v", gk, ga, err)
		}
		_, _, err = db.AppKeyWithApp(ctx, "nope")
		wantErr(t, "AppKeyWithApp unknown", err, ErrNotFound)

		// Rotation with overlap: the new key never expires, the old one
		// now expires at the end of the overlap.
		clock.Advance(time.Minute)
		overlap := clock.Now().Add(10 * time.Minute)
		k2, err := db.AddAppKey(ctx, AppKey{ID: "k2", AppID: a.ID, MAC: HashToken("mac-2")}, overlap)
		if err != nil || !k2.ExpiresAt.IsZero() || !k2.CreatedAt.Equal(clock.Now()) {
			t.Fatalf("AddAppKey = %+v, %v", k2, err)
		}
		keys, err := db.AppKeys(ctx, a.ID)
		if err != nil || len(keys) != 2 || keys[0].ID != "k1" || !keys[0].ExpiresAt.Equal(overlap) || keys[1].ID != "k2" || !keys[1].ExpiresAt.IsZero() {
			t.Fatalf("AppKeys after rotation = %+v, %v", keys, err)
		}
		// A later rotation with a longer overlap does not extend k1.
		if _, err := db.AddAppKey(ctx, AppKey{ID: "k3", AppID: a.ID, MAC: HashToken("mac-3")}, overlap.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		keys, _ = db.AppKeys(ctx, a.ID)
		if !keys[0].ExpiresAt.Equal(overlap) || !keys[1].ExpiresAt.Equal(overlap.Add(time.Hour)) || !keys[2].ExpiresAt.IsZero() {
			t.Fatalf("AppKeys after second rotation = %+v", keys)
		}
		_, err = db.AddAppKey(ctx, AppKey{ID: "k9", AppID: "nope", MAC: mac}, time.Time{})
		wantErr(t, "AddAppKey unknown app", err, ErrNotFound)
		_, err = db.AddAppKey(ctx, AppKey{ID: "k2", AppID: a.ID, MAC: mac}, time.Time{})
		wantErr(t, "AddAppKey duplicate id", err, ErrDuplicate)

		// Revocation.
		rk, err := db.RevokeAppKey(ctx, a.ID, "k2")
		if err != nil || !rk.RevokedAt.Equal(clock.Now()) {
			t.Fatalf("RevokeAppKey = %+v, %v", rk, err)
		}
		clock.Advance(time.Second)
		rk2, err := db.RevokeAppKey(ctx, a.ID, "k2")
		if err != nil || !rk2.RevokedAt.Equal(rk.RevokedAt) {
			t.Fatalf("RevokeAppKey again = %+v, %v; want the first revocation time", rk2, err)
		}
		_, err = db.RevokeAppKey(ctx, "com.example.other", "k2")
		wantErr(t, "RevokeAppKey of another app", err, ErrNotFound)

		// Last use: coalesced writes, never backwards.
		t1 := clock.Now()
		if err := db.TouchAppKeys(ctx, map[string]time.Time{"k1": t1, "k3": t1, "unknown": t1}); err != nil {
			t.Fatal(err)
		}
		if err := db.TouchAppKeys(ctx, map[string]time.Time{"k1": t1.Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		keys, _ = db.AppKeys(ctx, a.ID)
		if !keys[0].LastUsedAt.Equal(t1) || !keys[1].LastUsedAt.IsZero() || !keys[2].LastUsedAt.Equal(t1) {
			t.Fatalf("AppKeys last use = %+v", keys)
		}

		// Installations.
		in, created, err := db.PutInstall(ctx, a.ID, "u1", []string{"read"})
		if err != nil || !created || !slices.Equal(in.Scopes, []string{"read"}) || in.UserID != "u1" {
			t.Fatalf("PutInstall = %+v, %v, %v", in, created, err)
		}
		clock.Advance(time.Second)
		in, created, err = db.PutInstall(ctx, a.ID, "u1", []string{})
		if err != nil || created || len(in.Scopes) != 0 || in.Scopes == nil || !in.UpdatedAt.After(in.CreatedAt) {
			t.Fatalf("PutInstall again = %+v, %v, %v; want the scopes replaced", in, created, err)
		}
		_, _, err = db.PutInstall(ctx, "nope", "u1", nil)
		wantErr(t, "PutInstall unknown app", err, ErrNotFound)
		if _, _, err := db.PutInstall(ctx, a.ID, "u2", []string{"read", "stream.transcript"}); err != nil {
			t.Fatal(err)
		}
		if got, err := db.Install(ctx, a.ID, "u2"); err != nil || len(got.Scopes) != 2 {
			t.Fatalf("Install = %+v, %v", got, err)
		}
		_, err = db.Install(ctx, a.ID, "u3")
		wantErr(t, "Install absent", err, ErrNotFound)
		ins, more, err := db.InstallsOfApp(ctx, a.ID, "", 1)
		if err != nil || !more || len(ins) != 1 || ins[0].UserID != "u1" {
			t.Fatalf("InstallsOfApp page 1 = %+v, %v, %v", ins, more, err)
		}
		ins, more, err = db.InstallsOfApp(ctx, a.ID, "u1", 1)
		if err != nil || more || len(ins) != 1 || ins[0].UserID != "u2" {
			t.Fatalf("InstallsOfApp page 2 = %+v, %v, %v", ins, more, err)
		}
		ins, _, err = db.InstallsOfUser(ctx, "u2", "", 0)
		if err != nil || len(ins) != 1 || ins[0].AppID != a.ID {
			t.Fatalf("InstallsOfUser = %+v, %v", ins, err)
		}
		_, _, err = db.InstallsOfUser(ctx, "u2", "", MaxPageLimit+1)
		wantErr(t, "InstallsOfUser over the limit", err, ErrInvalid)
		wantErr(t, "DeleteInstall", db.DeleteInstall(ctx, a.ID, "u1"), nil)
		wantErr(t, "DeleteInstall again", db.DeleteInstall(ctx, a.ID, "u1"), ErrNotFound)

		// Listing and deletion: keys and installations go with the app.
		if _, _, err := db.CreateApp(ctx, testApp("com.example.b"), AppKey{ID: "kb", MAC: mac}); err != nil {
			t.Fatal(err)
		}
		apps, more, err := db.Apps(ctx, "", 1)
		if err != nil || !more || len(apps) != 1 || apps[0].ID != "com.example.b" {
			t.Fatalf("Apps page 1 = %+v, %v, %v", apps, more, err)
		}
		apps, more, err = db.Apps(ctx, "com.example.b", 0)
		if err != nil || more || len(apps) != 1 || apps[0].ID != a.ID {
			t.Fatalf("Apps page 2 = %+v, %v, %v", apps, more, err)
		}
		users, err := db.DeleteApp(ctx, a.ID)
		if err != nil || !slices.Equal(users, []string{"u2"}) {
			t.Fatalf("DeleteApp = %v, %v; want [u2]", users, err)
		}
		_, _, err = db.AppKeyWithApp(ctx, "k1")
		wantErr(t, "AppKeyWithApp of a deleted app", err, ErrNotFound)
		if keys, err := db.AppKeys(ctx, a.ID); err != nil || len(keys) != 0 {
			t.Fatalf("AppKeys of a deleted app = %+v, %v", keys, err)
		}
		_, err = db.Install(ctx, a.ID, "u2")
		wantErr(t, "Install of a deleted app", err, ErrNotFound)
		_, err = db.DeleteApp(ctx, a.ID)
		wantErr(t, "DeleteApp again", err, ErrNotFound)
	})
}
