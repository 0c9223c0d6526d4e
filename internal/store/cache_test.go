package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestDeviceStatus(t *testing.T) {
	eachBackend(t, Options{DeviceCacheTTL: time.Hour}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct, other := newAccount(t, db), newAccount(t, db)
		d, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name        string
			account, id string
			want        DeviceStatus
		}{
			{"live", acct, d.ID, DeviceLive},
			{"live, cached", acct, d.ID, DeviceLive},
			{"other account", other, d.ID, DeviceUnknown},
			{"unknown id", acct, "nope", DeviceUnknown},
		}
		for _, tc := range tests {
			if got, err := db.DeviceStatus(ctx, tc.account, tc.id); err != nil || got != tc.want {
				t.Errorf("%s: DeviceStatus = %v, %v; want %v", tc.name, got, err, tc.want)
			}
		}
		// A cached "live" answer must not survive a revocation, even with a
		// TTL of an hour.
		if _, _, err := db.RevokeDevice(ctx, acct, d.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := db.DeviceStatus(ctx, acct, d.ID); err != nil || got != DeviceRevoked {
			t.Fatalf("after RevokeDevice: DeviceStatus = %v, %v; want DeviceRevoked", got, err)
		}
		// A cached "unknown" answer must not survive the device's creation
		// (ids are random, so this is about the cache, not a real scenario).
		if got, _ := db.DeviceStatus(ctx, other, "x"); got != DeviceUnknown {
			t.Fatalf("DeviceStatus of a missing device = %v, want DeviceUnknown", got)
		}
		d2, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "browser"})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := db.DeviceStatus(ctx, acct, d2.ID); err != nil || got != DeviceLive {
			t.Fatalf("new device: DeviceStatus = %v, %v; want DeviceLive", got, err)
		}
	})
}

// TestDeviceStatusOtherProcess shows the documented limit: a revocation made
// through another DB on the same database is seen once the TTL has passed.
func TestDeviceStatusOtherProcess(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "junction.db")
	const ttl = 50 * time.Millisecond
	a := openDSN(t, dsn, Options{DeviceCacheTTL: ttl})
	b := openDSN(t, dsn, Options{DeviceCacheTTL: ttl})
	ctx := t.Context()
	acct := newAccount(t, a)
	d, _, err := a.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.DeviceStatus(ctx, acct, d.ID); err != nil || got != DeviceLive {
		t.Fatalf("DeviceStatus = %v, %v; want DeviceLive", got, err)
	}
	if _, _, err := a.RevokeDevice(ctx, acct, d.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl + 10*time.Millisecond)
	if got, err := b.DeviceStatus(ctx, acct, d.ID); err != nil || got != DeviceRevoked {
		t.Fatalf("after the TTL: DeviceStatus on the other DB = %v, %v; want DeviceRevoked", got, err)
	}
	// Disabled cache: always the database.
	c := openDSN(t, dsn, Options{DeviceCacheTTL: -1})
	if got, err := c.DeviceStatus(ctx, acct, d.ID); err != nil || got != DeviceRevoked {
		t.Fatalf("without cache: DeviceStatus = %v, %v; want DeviceRevoked", got, err)
	}
}

// TestDeviceCacheEmptiesWhenIdle: answers are forgotten two TTLs after the
// last lookup even when no other lookup comes to rotate the generations.
func TestDeviceCacheEmptiesWhenIdle(t *testing.T) {
	var c deviceCache
	ttl := 20 * time.Millisecond
	c.mu.Lock()
	for _, k := range []string{"a", "b", "c"} {
		c.putLocked(k, deviceEntry{status: DeviceLive, at: time.Now()}, ttl)
	}
	c.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n, sweeping := len(c.cur)+len(c.prev), c.sweeping
		c.mu.Unlock()
		if n == 0 && !sweeping {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache still holds %d answers (sweeping %v) long after its TTL", n, sweeping)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoginStatus(t *testing.T) {
	eachBackend(t, Options{DeviceCacheTTL: time.Hour}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		d, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		login := func(sid string) []byte {
			t.Helper()
			h := HashToken("refresh-" + sid)
			if _, err := db.CreateRefresh(ctx, NewRefresh{Hash: h, FamilyID: sid, AccountID: acct, DeviceID: d.ID, SessionID: sid,
				ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			return h
		}
		status := func(sid string, want DeviceStatus) {
			t.Helper()
			if got, err := db.LoginStatus(ctx, sid); err != nil || got != want {
				t.Fatalf("LoginStatus(%s) = %v, %v; want %v", sid, got, err, want)
			}
		}
		first := login("s1")
		login("s2")
		status("s1", DeviceLive)
		status("s1", DeviceLive) // cached
		status("nope", DeviceUnknown)

		// Logout: the cached "live" answer must not survive, even with a
		// TTL of an hour.
		if err := db.RevokeFamily(ctx, "s2"); err != nil {
			t.Fatal(err)
		}
		status("s2", DeviceRevoked)
		status("s1", DeviceLive)

		// Reuse of a rotated token revokes the family, returns the login it
		// revoked, and drops the cached answer.
		second := HashToken("second")
		if _, err := db.RotateRefresh(ctx, first, second, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		status("s1", DeviceLive)
		got, err := db.RotateRefresh(ctx, first, HashToken("third"), time.Now().Add(time.Hour))
		if !errors.Is(err, ErrRefreshReuse) || got.SessionID != "s1" || got.AccountID != acct || got.DeviceID != d.ID {
			t.Fatalf("reuse: got %+v, %v; want ErrRefreshReuse with the login s1", got, err)
		}
		status("s1", DeviceRevoked)
		if ok, err := db.LoginRevoked(ctx, acct, "s1"); err != nil || !ok {
			t.Fatalf("LoginRevoked = %v, %v; want true", ok, err)
		}
	})
}
