package store

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestUpdatesSince(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		s, ups1, _ := db.CreateSession(ctx, acct, []byte("m"), nil)
		_, ups2, _ := db.AppendMessages(ctx, acct, s.ID, []NewMessage{{LocalID: "x", Body: []byte("hi")}, {}})
		_, ups3, _ := db.UpdateSessionMetadata(ctx, acct, s.ID, 1, []byte("m2"))
		m, ups4, _ := db.CreateMachine(ctx, acct, nil, nil)
		ups5, _ := db.DeleteMachine(ctx, acct, m.ID)
		var returned []Update
		for _, u := range [][]Update{ups1, ups2, ups3, ups4, ups5} {
			returned = append(returned, u...)
		}
		wantKinds := []string{KindSessionCreated, KindMessageCreated, KindMessageCreated, KindSessionUpdated, KindMachineCreated, KindMachineDeleted}

		cases := []struct {
			since     int64
			limit     int
			wantSeqs  string
			wantReset bool
		}{
			{0, 0, "[1 2 3 4 5 6]", false},
			{2, 0, "[3 4 5 6]", false},
			{2, 2, "[3 4]", false},
			{6, 0, "[]", false},
			{7, 0, "[]", true}, // beyond the last seq: the client's state is not ours
		}
		for _, tc := range cases {
			ups, reset, err := db.UpdatesSince(ctx, acct, tc.since, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, u := range ups {
				seqs = append(seqs, u.Seq)
			}
			if got := fmt.Sprint(seqs); (got != tc.wantSeqs && !(got == "[]" && tc.wantSeqs == "[]")) || reset != tc.wantReset {
				t.Fatalf("UpdatesSince(%d, %d) = %v reset %v, want %s reset %v", tc.since, tc.limit, seqs, reset, tc.wantSeqs, tc.wantReset)
			}
		}
		// What UpdatesSince reads back is exactly what the writers returned.
		all, _, _ := db.UpdatesSince(ctx, acct, 0, 0)
		for i, u := range all {
			r := returned[i]
			if u.Seq != r.Seq || u.Kind != wantKinds[i] || u.Kind != r.Kind || u.ID != r.ID || u.Version != r.Version ||
				string(u.Body) != string(r.Body) || !u.CreatedAt.Equal(r.CreatedAt) {
				t.Fatalf("update %d: stored %+v, returned %+v", i, u, r)
			}
		}
		var msg Message
		if err := json.Unmarshal(all[1].Body, &msg); err != nil || string(msg.Body) != "hi" || msg.SessionID != s.ID || msg.Seq != 1 {
			t.Fatalf("message.created body %s = %+v, %v", all[1].Body, msg, err)
		}
		_, _, err := db.UpdatesSince(ctx, "nope", 0, 0)
		wantErr(t, "UpdatesSince unknown account", err, ErrNotFound)
		_, _, err = db.UpdatesSince(ctx, acct, -1, 0)
		wantErr(t, "UpdatesSince negative", err, ErrInvalid)
	})
}

func TestUpdatesRetention(t *testing.T) {
	const keep = 10
	eachBackend(t, Options{UpdateRetention: keep}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		sid := newSession(t, db, acct) // seq 1
		for i := 0; i < 49; i++ {      // seqs 2..50
			if _, _, err := db.AppendMessages(ctx, acct, sid, []NewMessage{{}}); err != nil {
				t.Fatal(err)
			}
		}
		var stored int
		db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM updates WHERE account_id = $1`, acct).Scan(&stored)
		if stored < keep || stored > keep+keep/16+1 {
			t.Fatalf("%d updates stored, want %d..%d", stored, keep, keep+keep/16+1)
		}
		cases := []struct {
			since     int64
			wantN     int
			wantReset bool
		}{
			{0, 0, true},
			{39, 0, true},
			{40, 10, false}, // the last 10 are always there
			{49, 1, false},
			{50, 0, false},
		}
		for _, tc := range cases {
			ups, reset, err := db.UpdatesSince(ctx, acct, tc.since, 0)
			if err != nil {
				t.Fatal(err)
			}
			if reset != tc.wantReset || len(ups) != tc.wantN {
				t.Fatalf("UpdatesSince(%d) = %d updates reset %v, want %d reset %v", tc.since, len(ups), reset, tc.wantN, tc.wantReset)
			}
			if len(ups) > 0 && (ups[0].Seq != tc.since+1 || ups[len(ups)-1].Seq != 50) {
				t.Fatalf("UpdatesSince(%d) = seqs %d..%d, want %d..50", tc.since, ups[0].Seq, ups[len(ups)-1].Seq, tc.since+1)
			}
		}
	})
}

func TestPrune(t *testing.T) {
	clk := newClock()
	eachBackend(t, Options{UpdateMaxAge: time.Hour, Now: clk.Now}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		sid := newSession(t, db, acct)                                                   // seq 1, old
		db.AppendMessages(ctx, acct, sid, []NewMessage{{}, {}})                          // seqs 2, 3, old
		db.IdemBegin(ctx, "p", "old", time.Minute)                                       // expires
		db.CreatePairingCode(ctx, HashToken("c"), acct, "d", clk.Now().Add(time.Minute)) // expires
		clk.Advance(2 * time.Hour)
		db.AppendMessages(ctx, acct, sid, []NewMessage{{}}) // seq 4, fresh
		db.IdemBegin(ctx, "p", "new", time.Minute)

		st, err := db.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Updates != 3 || st.Idempotency != 1 || st.PairingCodes != 1 {
			t.Fatalf("Prune = %+v, want 3 updates, 1 idempotency record, 1 pairing code", st)
		}
		if _, reset, _ := db.UpdatesSince(ctx, acct, 2, 0); !reset {
			t.Fatal("UpdatesSince(2) after age prune: reset false, want true")
		}
		ups, reset, _ := db.UpdatesSince(ctx, acct, 3, 0)
		if reset || len(ups) != 1 || ups[0].Seq != 4 {
			t.Fatalf("UpdatesSince(3) after age prune = %+v reset %v, want seq 4", ups, reset)
		}
		if found, _, _, _, err := db.IdemLookup(ctx, "p", "new"); err != nil || !found {
			t.Fatalf("live idempotency record pruned: found %v, %v", found, err)
		}
		if st, _ := db.Prune(ctx); st != (PruneStats{}) {
			t.Fatalf("second Prune = %+v, want nothing", st)
		}
	})
}
