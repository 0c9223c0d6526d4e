package store

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefreshRotation(t *testing.T) {
	clk := newClock()
	eachBackend(t, Options{Now: clk.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		dev, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		exp := clk.Now().Add(time.Hour)
		t0, err := db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("t0"), AccountID: acct, DeviceID: dev.ID, SessionID: "login1", ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
		if t0.FamilyID == "" {
			t.Fatal("CreateRefresh gave no family")
		}
		_, err = db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("t0"), AccountID: acct, DeviceID: dev.ID, ExpiresAt: exp})
		wantErr(t, "CreateRefresh same hash", err, ErrDuplicate)
		_, err = db.CreateRefresh(ctx, NewRefresh{Hash: []byte("short"), AccountID: acct, DeviceID: dev.ID, ExpiresAt: exp})
		wantErr(t, "CreateRefresh bad hash", err, ErrInvalid)

		t1, err := db.RotateRefresh(ctx, HashToken("t0"), HashToken("t1"), exp)
		if err != nil {
			t.Fatal(err)
		}
		if t1.FamilyID != t0.FamilyID || t1.DeviceID != dev.ID || t1.SessionID != "login1" || t1.AccountID != acct {
			t.Fatalf("rotated token = %+v, want family %s device %s session login1", t1, t0.FamilyID, dev.ID)
		}
		if old, _ := db.RefreshByHash(ctx, HashToken("t0")); old.UsedAt.IsZero() {
			t.Fatal("old token not marked used")
		}

		// Reuse of t0: error, and t1 (same family) is revoked with it.
		_, err = db.RotateRefresh(ctx, HashToken("t0"), HashToken("t2"), exp)
		wantErr(t, "reuse of t0", err, ErrRefreshReuse)
		_, err = db.RotateRefresh(ctx, HashToken("t1"), HashToken("t3"), exp)
		wantErr(t, "t1 after reuse", err, ErrRevoked)
		if _, err := db.RefreshByHash(ctx, HashToken("t2")); err == nil {
			t.Fatal("reuse stored the new token t2")
		}

		cases := []struct {
			name  string
			setup func() []byte // returns the hash to rotate
			want  error
		}{
			{"unknown", func() []byte { return HashToken("never") }, ErrNotFound},
			{"expired", func() []byte {
				db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("e"), AccountID: acct, DeviceID: dev.ID, ExpiresAt: clk.Now().Add(-time.Second)})
				return HashToken("e")
			}, ErrExpired},
			{"family revoked", func() []byte {
				tok, _ := db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("f"), AccountID: acct, DeviceID: dev.ID, ExpiresAt: exp})
				wantErr(t, "RevokeFamily", db.RevokeFamily(ctx, tok.FamilyID), nil)
				return HashToken("f")
			}, ErrRevoked},
			{"device revoked", func() []byte {
				d2, _, _ := db.CreateDevice(ctx, acct, NewDevice{Kind: "tv"})
				db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("d"), AccountID: acct, DeviceID: d2.ID, ExpiresAt: exp})
				if _, _, err := db.RevokeDevice(ctx, acct, d2.ID); err != nil {
					t.Fatal(err)
				}
				return HashToken("d")
			}, ErrRevoked},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := db.RotateRefresh(ctx, tc.setup(), HashToken("new-"+tc.name), exp)
				wantErr(t, "RotateRefresh", err, tc.want)
			})
		}
		wantErr(t, "RevokeFamily unknown", db.RevokeFamily(ctx, "nope"), ErrNotFound)

		// Refresh for a revoked device is refused.
		d3, _, _ := db.CreateDevice(ctx, acct, NewDevice{Kind: "tv"})
		db.RevokeDevice(ctx, acct, d3.ID)
		_, err = db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("r"), AccountID: acct, DeviceID: d3.ID, ExpiresAt: exp})
		wantErr(t, "CreateRefresh revoked device", err, ErrRevoked)

		// Concurrent rotations of one token: exactly one wins, and the
		// losers' reuse revokes the winner's family.
		base, _ := db.CreateRefresh(ctx, NewRefresh{Hash: HashToken("c"), AccountID: acct, DeviceID: dev.ID, ExpiresAt: exp})
		var wins, reuses atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Go(func() {
				_, err := db.RotateRefresh(ctx, HashToken("c"), HashToken("c-"+string(rune('a'+i))), exp)
				switch {
				case err == nil:
					wins.Add(1)
				case isErr(err, ErrRefreshReuse):
					reuses.Add(1)
				default:
					t.Errorf("concurrent RotateRefresh: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || reuses.Load() != 7 {
			t.Fatalf("concurrent rotations: %d wins, %d reuses; want 1, 7", wins.Load(), reuses.Load())
		}
		rows, err := db.r.QueryContext(ctx, `SELECT revoked_at FROM refresh_tokens WHERE family_id = $1`, base.FamilyID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var rev int64
			rows.Scan(&rev)
			if rev == 0 {
				t.Fatal("a token of the reused family is not revoked")
			}
			n++
		}
		if n != 2 {
			t.Fatalf("family has %d tokens, want 2 (original and the winner's)", n)
		}
	})
}

func TestPairingCodes(t *testing.T) {
	clk := newClock()
	eachBackend(t, Options{Now: clk.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		exp := clk.Now().Add(5 * time.Minute)
		if _, err := db.CreatePairingCode(ctx, HashToken("123-456"), acct, "dev1", exp); err != nil {
			t.Fatal(err)
		}
		_, err := db.CreatePairingCode(ctx, HashToken("123-456"), acct, "dev1", exp)
		wantErr(t, "CreatePairingCode duplicate", err, ErrDuplicate)

		p, err := db.ConsumePairingCode(ctx, HashToken("123-456"))
		if err != nil || p.AccountID != acct || p.CreatedByDevice != "dev1" || p.UsedAt.IsZero() {
			t.Fatalf("ConsumePairingCode = %+v, %v", p, err)
		}
		_, err = db.ConsumePairingCode(ctx, HashToken("123-456"))
		wantErr(t, "second consume", err, ErrNotFound)
		_, err = db.ConsumePairingCode(ctx, HashToken("000-000"))
		wantErr(t, "unknown code", err, ErrNotFound)

		db.CreatePairingCode(ctx, HashToken("exp"), acct, "dev1", clk.Now().Add(time.Minute))
		clk.Advance(2 * time.Minute)
		_, err = db.ConsumePairingCode(ctx, HashToken("exp"))
		wantErr(t, "expired code", err, ErrExpired)
		// An expired code's hash may be issued again.
		if _, err := db.CreatePairingCode(ctx, HashToken("exp"), acct, "dev1", clk.Now().Add(time.Minute)); err != nil {
			t.Fatalf("re-create expired code: %v", err)
		}

		// Concurrent consumers: exactly one wins.
		db.CreatePairingCode(ctx, HashToken("race"), acct, "dev1", clk.Now().Add(time.Minute))
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Go(func() {
				_, err := db.ConsumePairingCode(ctx, HashToken("race"))
				if err == nil {
					wins.Add(1)
				} else if !isErr(err, ErrNotFound) {
					t.Errorf("concurrent consume: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("concurrent consumers: %d won, want exactly 1", wins.Load())
		}
	})
}
