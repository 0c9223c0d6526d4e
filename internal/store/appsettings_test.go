package store

import (
	"testing"
)

// TestAppSettings: versions start at 1 and move by compare-and-set; a
// stale version is a conflict carrying the current settings; an unknown
// app is not found; delete forgets; deleting the app cascades.
func TestAppSettings(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		if _, _, err := db.CreateApp(ctx, testApp("com.example.set"), AppKey{ID: "k1", MAC: HashToken("m")}); err != nil {
			t.Fatal(err)
		}
		_, err := db.AppSettingsOf(ctx, "com.example.set", "u1")
		wantErr(t, "AppSettingsOf before a write", err, ErrNotFound)
		_, err = db.PutAppSettings(ctx, "com.example.none", "u1", []byte(`{}`), 0)
		wantErr(t, "PutAppSettings of an unknown app", err, ErrNotFound)
		_, err = db.PutAppSettings(ctx, "com.example.set", "u1", []byte(`{}`), 3)
		wantErr(t, "first write with a version", err, ErrConflict)
		s, err := db.PutAppSettings(ctx, "com.example.set", "u1", []byte(`{"lang":"fr"}`), 0)
		if err != nil || s.Version != 1 || string(s.Values) != `{"lang":"fr"}` {
			t.Fatalf("first write = %+v, %v", s, err)
		}
		s, err = db.PutAppSettings(ctx, "com.example.set", "u1", []byte(`{"lang":"de"}`), 1)
		if err != nil || s.Version != 2 || string(s.Values) != `{"lang":"de"}` {
			t.Fatalf("second write = %+v, %v", s, err)
		}
		s, err = db.PutAppSettings(ctx, "com.example.set", "u1", []byte(`{"lang":"it"}`), 1)
		wantErr(t, "stale write", err, ErrConflict)
		if s.Version != 2 || string(s.Values) != `{"lang":"de"}` {
			t.Fatalf("stale write answered %+v, want the current settings", s)
		}
		if other, err := db.PutAppSettings(ctx, "com.example.set", "u2", []byte(`{}`), 0); err != nil || other.Version != 1 {
			t.Fatalf("another user's first write = %+v, %v", other, err)
		}
		if err := db.DeleteAppSettings(ctx, "com.example.set", "u1"); err != nil {
			t.Fatal(err)
		}
		_, err = db.AppSettingsOf(ctx, "com.example.set", "u1")
		wantErr(t, "after delete", err, ErrNotFound)
		if _, err := db.DeleteApp(ctx, "com.example.set"); err != nil {
			t.Fatal(err)
		}
		_, err = db.AppSettingsOf(ctx, "com.example.set", "u2")
		wantErr(t, "after the app's deletion", err, ErrNotFound)
	})
}
