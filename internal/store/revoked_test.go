package store

import (
	"crypto/sha256"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestRevocationsInMemory: DeviceRevoked and LoginRevoked answer from the
// revocations held in memory. This process's revocations are refused at
// once; another process's (a second DB on the same database) once the
// TTL has passed, also one stamped before the newest seen (a late commit
// or a lagging clock); a new process reads them all at first use; a
// revoked login is forgotten once its refresh tokens have expired; a
// device the store does not know is not revoked.
func TestRevocationsInMemory(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			ctx := t.Context()
			clock := newClock()
			const ttl = time.Second
			opts := Options{Now: clock.Now, DeviceCacheTTL: ttl}
			dsn := testDSN(t, b)
			a := openDSN(t, dsn, opts)
			other := openDSN(t, dsn, opts) // another node on the same database

			acct := newAccount(t, a)
			newDevice := func() string {
				t.Helper()
				d, _, err := a.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
				if err != nil {
					t.Fatal(err)
				}
				return d.ID
			}
			newLogin := func(device string, ttl time.Duration) string {
				t.Helper()
				h := sha256.Sum256(randBytes(t, 16))
				rt, err := a.CreateRefresh(ctx, NewRefresh{Hash: h[:], AccountID: acct, DeviceID: device, SessionID: "s", ExpiresAt: clock.Now().Add(ttl)})
				if err != nil {
					t.Fatal(err)
				}
				return rt.FamilyID
			}
			d1, d2, d3, d4 := newDevice(), newDevice(), newDevice(), newDevice()
			l1 := newLogin(d4, time.Hour)
			check := func(db *DB, name, device, login string, wantDevice, wantLogin bool) {
				t.Helper()
				got, err := db.DeviceRevoked(ctx, acct, device)
				if err != nil || got != wantDevice {
					t.Errorf("%s: DeviceRevoked(%s) = %v, %v; want %v", name, device, got, err, wantDevice)
				}
				if login == "" {
					return
				}
				got, err = db.LoginRevoked(ctx, acct, login)
				if err != nil || got != wantLogin {
					t.Errorf("%s: LoginRevoked(%s) = %v, %v; want %v", name, login, got, err, wantLogin)
				}
			}
			// Both read the set (nothing revoked yet).
			check(a, "a before", d1, l1, false, false)
			check(other, "other before", d1, l1, false, false)
			check(a, "unknown device", "d-nobody", "f-nobody", false, false)

			if _, _, err := a.RevokeDevice(ctx, acct, d1); err != nil {
				t.Fatal(err)
			}
			if err := a.RevokeFamily(ctx, l1); err != nil {
				t.Fatal(err)
			}
			check(a, "a right after revoking", d1, l1, true, true)
			check(a, "a, another device", d2, "", false, false)
			check(other, "other within the TTL", d1, l1, false, false)
			clock.Advance(ttl)
			check(other, "other after the TTL", d1, l1, true, true)

			// A revocation stamped a minute before the newest one seen.
			clock.Advance(-time.Minute)
			if _, _, err := a.RevokeDevice(ctx, acct, d2); err != nil {
				t.Fatal(err)
			}
			clock.Advance(time.Minute + ttl)
			check(other, "other, a revocation stamped earlier", d2, "", true, false)

			// A process started now reads every revocation at first use.
			late := openDSN(t, dsn, opts)
			check(late, "a new process", d1, l1, true, true)
			check(late, "a new process, second device", d2, "", true, false)
			check(late, "a new process, live device", d3, "", false, false)

			// A revoked login is forgotten once its refresh tokens expired
			// (its access tokens, shorter-lived, expired too), as
			// LoginStatus forgets it once they are pruned.
			clock.Advance(time.Hour + ttl)
			check(a, "a after the login's expiry", d1, l1, true, false)
			check(other, "other after the login's expiry", d1, l1, true, false)
			check(late, "a new process after the login's expiry", d1, l1, true, false)
		})
	}
}

// BenchmarkRevocationCheck: the check of a connect whose device has not
// connected within the TTL (a different device each time, as in a fleet
// reconnecting), from the status cache (a query on every miss) and from
// the revocations held in memory.
func BenchmarkRevocationCheck(b *testing.B) {
	db := openDSN(b, testDSN(b, "sqlite"), Options{})
	ctx := b.Context()
	acct := newAccount(b, db)
	var i atomic.Int64 // a device never looked up before, across runs
	b.Run("status-cache-miss", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.DeviceStatus(ctx, acct, "d-"+strconv.FormatInt(i.Add(1), 10)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("in-memory", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.DeviceRevoked(ctx, acct, "d-"+strconv.FormatInt(i.Add(1), 10)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
