package store

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"sync"
	"testing"
)

func TestAccounts(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		pub, _, _ := ed25519.GenerateKey(nil)

		a, created, err := db.AccountForKey(ctx, pub)
		if err != nil || !created {
			t.Fatalf("AccountForKey first = created %v, err %v; want created", created, err)
		}
		b, created, err := db.AccountForKey(ctx, pub)
		if err != nil || created || b.ID != a.ID {
			t.Fatalf("AccountForKey again = %s created %v err %v; want %s not created", b.ID, created, err, a.ID)
		}
		got, err := db.Account(ctx, a.ID)
		if err != nil || !bytes.Equal(got.PublicKey, pub) || !got.CreatedAt.Equal(a.CreatedAt) {
			t.Fatalf("Account = %+v, %v; want %+v", got, err, a)
		}
		got, err = db.AccountByPublicKey(ctx, pub)
		if err != nil || got.ID != a.ID {
			t.Fatalf("AccountByPublicKey = %s, %v; want %s", got.ID, err, a.ID)
		}
		_, err = db.CreateAccount(ctx, pub)
		wantErr(t, "CreateAccount duplicate", err, ErrDuplicate)
		_, err = db.Account(ctx, "nope")
		wantErr(t, "Account unknown", err, ErrNotFound)
		_, _, err = db.AccountForKey(ctx, pub[:10])
		wantErr(t, "AccountForKey short key", err, ErrInvalid)

		// Concurrent first logins with one key make one account.
		pub2, _, _ := ed25519.GenerateKey(nil)
		ids := make([]string, 8)
		var creators int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range ids {
			wg.Go(func() {
				a, created, err := db.AccountForKey(ctx, pub2)
				if err != nil {
					t.Errorf("concurrent AccountForKey: %v", err)
					return
				}
				ids[i] = a.ID
				if created {
					mu.Lock()
					creators++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if creators != 1 {
			t.Fatalf("concurrent AccountForKey: %d creators, want 1", creators)
		}
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("concurrent AccountForKey: ids %v, want all equal", ids)
			}
		}
	})
}

func TestDevices(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct, other := newAccount(t, db), newAccount(t, db)

		d, ups, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "phone", Name: "Pixel", PublicKey: []byte{1, 2, 3}, PushToken: "secret-push"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Version != 1 || d.Kind != "phone" || d.Name != "Pixel" || !bytes.Equal(d.PublicKey, []byte{1, 2, 3}) || d.Revoked() {
			t.Fatalf("CreateDevice = %+v", d)
		}
		if len(ups) != 1 || ups[0].Kind != KindDeviceCreated || ups[0].ID != d.ID || ups[0].Seq != 1 {
			t.Fatalf("CreateDevice updates = %+v, want one device.created seq 1", ups)
		}
		if bytes.Contains(ups[0].Body, []byte("secret-push")) {
			t.Fatalf("update body %s leaks the push token", ups[0].Body)
		}
		d2, _, err := db.CreateDevice(ctx, acct, NewDevice{Kind: "browser"})
		if err != nil || d2.PublicKey != nil {
			t.Fatalf("CreateDevice without key = %+v, %v", d2, err)
		}
		_, _, err = db.CreateDevice(ctx, acct, NewDevice{})
		wantErr(t, "CreateDevice without kind", err, ErrInvalid)

		list, err := db.Devices(ctx, acct)
		if err != nil || len(list) != 2 || list[0].ID != d.ID || list[1].ID != d2.ID {
			t.Fatalf("Devices = %+v, %v; want [%s %s]", list, err, d.ID, d2.ID)
		}
		if list, _ := db.Devices(ctx, other); len(list) != 0 {
			t.Fatalf("Devices(other) = %d, want 0", len(list))
		}

		r, ups, err := db.RenameDevice(ctx, acct, d.ID, "Work phone")
		if err != nil || r.Name != "Work phone" || r.Version != 2 || len(ups) != 1 || ups[0].Kind != KindDeviceUpdated || ups[0].Version != 2 {
			t.Fatalf("RenameDevice = %+v, %+v, %v", r, ups, err)
		}
		p, _, err := db.SetDevicePushToken(ctx, acct, d.ID, "tok2")
		if err != nil || p.PushToken != "tok2" || p.Version != 3 {
			t.Fatalf("SetDevicePushToken = %+v, %v", p, err)
		}
		_, _, err = db.RenameDevice(ctx, other, d.ID, "stolen")
		wantErr(t, "RenameDevice other account", err, ErrNotFound)

		wantErr(t, "TouchDevice", db.TouchDevice(ctx, acct, d.ID), nil)
		wantErr(t, "TouchDevice other account", db.TouchDevice(ctx, other, d.ID), ErrNotFound)
		got, _ := db.Device(ctx, acct, d.ID)
		if got.LastSeenAt.IsZero() {
			t.Fatalf("after TouchDevice LastSeenAt is zero")
		}
		seqBefore, _ := db.UpdateSeq(ctx, acct)

		rv, ups, err := db.RevokeDevice(ctx, acct, d.ID)
		if err != nil || !rv.Revoked() || len(ups) != 1 || ups[0].Kind != KindDeviceRevoked || ups[0].Seq != seqBefore+1 {
			t.Fatalf("RevokeDevice = %+v, %+v, %v", rv, ups, err)
		}
		var body Device
		if err := json.Unmarshal(ups[0].Body, &body); err != nil || body.RevokedAt.IsZero() {
			t.Fatalf("device.revoked body %s: %v", ups[0].Body, err)
		}
		rv2, ups, err := db.RevokeDevice(ctx, acct, d.ID)
		if err != nil || len(ups) != 0 || !rv2.RevokedAt.Equal(rv.RevokedAt) {
			t.Fatalf("RevokeDevice again = %+v, %d updates, %v; want no-op", rv2, len(ups), err)
		}
		_, _, err = db.RenameDevice(ctx, acct, d.ID, "x")
		wantErr(t, "RenameDevice revoked", err, ErrRevoked)
		_, _, err = db.RevokeDevice(ctx, acct, "nope")
		wantErr(t, "RevokeDevice unknown", err, ErrNotFound)
	})
}
