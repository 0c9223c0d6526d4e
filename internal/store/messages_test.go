package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

func TestAppendMessages(t *testing.T) {
	eachBackend(t, Options{MaxValueBytes: 1024}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct, other := newAccount(t, db), newAccount(t, db)
		sid := newSession(t, db, acct)

		steps := []struct {
			name     string
			batch    []NewMessage
			wantSeqs []int64
			wantNew  int // updates emitted
		}{
			{"first", []NewMessage{{LocalID: "a", Body: []byte("1")}}, []int64{1}, 1},
			{"batch", []NewMessage{{LocalID: "b"}, {LocalID: "c"}, {Body: []byte("no local id")}}, []int64{2, 3, 4}, 3},
			{"repeat of a", []NewMessage{{LocalID: "a", Body: []byte("other body")}}, []int64{1}, 0},
			{"repeat inside batch", []NewMessage{{LocalID: "d"}, {LocalID: "d"}, {LocalID: "b"}, {LocalID: "e"}}, []int64{5, 5, 2, 6}, 2},
			{"no local id never dedupes", []NewMessage{{}, {}}, []int64{7, 8}, 2},
		}
		for _, st := range steps {
			seqBefore, _ := db.UpdateSeq(ctx, acct)
			msgs, ups, err := db.AppendMessages(ctx, acct, sid, st.batch)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			var seqs []int64
			for _, m := range msgs {
				seqs = append(seqs, m.Seq)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(st.wantSeqs) {
				t.Fatalf("%s: seqs %v, want %v", st.name, seqs, st.wantSeqs)
			}
			if len(ups) != st.wantNew {
				t.Fatalf("%s: %d updates, want %d", st.name, len(ups), st.wantNew)
			}
			for i, u := range ups {
				if u.Kind != KindMessageCreated || u.Seq != seqBefore+int64(i)+1 {
					t.Fatalf("%s: update %d = %+v, want message.created seq %d", st.name, i, u, seqBefore+int64(i)+1)
				}
			}
		}
		// The repeat of "a" returned the stored body, not the new one.
		page, err := db.Messages(ctx, acct, sid, MessageQuery{Limit: 1})
		if err != nil || len(page) != 1 || string(page[0].Body) != "1" || page[0].LocalID != "a" {
			t.Fatalf("first message = %+v, %v; want body 1 local a", page, err)
		}
		if s, _ := db.Session(ctx, acct, sid); s.LastSeq != 8 {
			t.Fatalf("Session.LastSeq = %d, want 8", s.LastSeq)
		}

		// Paging both ways.
		pages := []struct {
			name string
			q    MessageQuery
			want []int64
		}{
			{"from start", MessageQuery{}, []int64{1, 2, 3, 4, 5, 6, 7, 8}},
			{"after 2 limit 3", MessageQuery{AfterSeq: 2, Limit: 3}, []int64{3, 4, 5}},
			{"after last", MessageQuery{AfterSeq: 8}, nil},
			{"before 6 limit 2 newest first", MessageQuery{BeforeSeq: 6, Limit: 2}, []int64{5, 4}},
			{"before 3", MessageQuery{BeforeSeq: 3}, []int64{2, 1}},
			{"latest via huge before", MessageQuery{BeforeSeq: 1 << 62, Limit: 2}, []int64{8, 7}},
			{"range", MessageQuery{AfterSeq: 2, BeforeSeq: 6}, []int64{3, 4, 5}},
		}
		for _, p := range pages {
			ms, err := db.Messages(ctx, acct, sid, p.q)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			var got []int64
			for _, m := range ms {
				got = append(got, m.Seq)
			}
			if fmt.Sprint(got) != fmt.Sprint(p.want) {
				t.Fatalf("%s: seqs %v, want %v", p.name, got, p.want)
			}
		}

		_, err = db.Messages(ctx, other, sid, MessageQuery{})
		wantErr(t, "Messages of another account's session", err, ErrNotFound)
		_, _, err = db.AppendMessages(ctx, other, sid, []NewMessage{{}})
		wantErr(t, "AppendMessages to another account's session", err, ErrNotFound)
		_, _, err = db.AppendMessages(ctx, acct, sid, nil)
		wantErr(t, "empty batch", err, ErrInvalid)
		_, _, err = db.AppendMessages(ctx, acct, sid, make([]NewMessage, MaxBatch+1))
		wantErr(t, "batch over MaxBatch", err, ErrInvalid)
		_, err = db.Messages(ctx, acct, sid, MessageQuery{Limit: MaxPageLimit + 1})
		wantErr(t, "page over MaxPageLimit", err, ErrInvalid)

		// Deleting the session deletes its messages.
		if _, err := db.DeleteSession(ctx, acct, sid); err != nil {
			t.Fatal(err)
		}
		var n int
		db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE session_id = $1`, sid).Scan(&n)
		if n != 0 {
			t.Fatalf("%d messages left after DeleteSession, want 0", n)
		}
	})
}

// TestAppendMessagesAtomic: a batch of 100 with one bad message, or a
// failure inside the transaction after the inserts, stores nothing.
func TestAppendMessagesAtomic(t *testing.T) {
	eachBackend(t, Options{MaxValueBytes: 1024}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		sid := newSession(t, db, acct)
		if _, _, err := db.AppendMessages(ctx, acct, sid, []NewMessage{{LocalID: "before"}}); err != nil {
			t.Fatal(err)
		}
		batch := func() []NewMessage {
			b := make([]NewMessage, MaxBatch)
			for i := range b {
				b[i] = NewMessage{LocalID: fmt.Sprintf("m%d", i), Body: []byte("ok")}
			}
			return b
		}
		boom := errors.New("boom")
		cases := []struct {
			name  string
			batch []NewMessage
			hook  func() error
			want  error
		}{
			{"one body too large", func() []NewMessage { b := batch(); b[57].Body = make([]byte, 1025); return b }(), nil, ErrTooLarge},
			{"one local id too long", func() []NewMessage { b := batch(); b[99].LocalID = string(make([]byte, 300)); return b }(), nil, ErrInvalid},
			{"failure after insert", batch(), func() error { return boom }, boom},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				db.hookAfterMessageInsert = tc.hook
				defer func() { db.hookAfterMessageInsert = nil }()
				seqBefore, _ := db.UpdateSeq(ctx, acct)
				_, _, err := db.AppendMessages(ctx, acct, sid, tc.batch)
				wantErr(t, "AppendMessages", err, tc.want)
				var n int
				db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages WHERE session_id = $1`, sid).Scan(&n)
				if n != 1 {
					t.Fatalf("%d messages stored, want 1 (the one before)", n)
				}
				if s, _ := db.Session(ctx, acct, sid); s.LastSeq != 1 {
					t.Fatalf("session seq %d, want 1", s.LastSeq)
				}
				if seq, _ := db.UpdateSeq(ctx, acct); seq != seqBefore {
					t.Fatalf("update seq %d, want %d", seq, seqBefore)
				}
			})
		}
		// The same batch, good, goes through whole.
		msgs, ups, err := db.AppendMessages(ctx, acct, sid, batch())
		if err != nil || len(msgs) != MaxBatch || len(ups) != MaxBatch || msgs[99].Seq != 101 {
			t.Fatalf("good batch: %d msgs, %d updates, %v", len(msgs), len(ups), err)
		}
	})
}

// TestConcurrentWriters: 8 goroutines × 50 appends to one session, plus
// writers on other objects of the account, leave gap-free sequences.
func TestConcurrentWriters(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		sid := newSession(t, db, acct)
		sid2 := newSession(t, db, acct)
		const writers, perWriter = 8, 50
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Go(func() {
				for i := 0; i < perWriter; i++ {
					target := sid
					if i%5 == 4 {
						target = sid2
					}
					if _, _, err := db.AppendMessages(ctx, acct, target, []NewMessage{{LocalID: fmt.Sprintf("w%d-%d", w, i)}}); err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
				}
			})
		}
		// Competing field updates on another session: versions must also be
		// gap-free and each accepted update emits one update.
		var accepted sync.Map
		for w := 0; w < 4; w++ {
			wg.Go(func() {
				for i := 0; i < 20; i++ {
					s, err := db.Session(ctx, acct, sid2)
					if err != nil {
						t.Error(err)
						return
					}
					_, _, err = db.UpdateSessionAgentState(ctx, acct, sid2, s.AgentState.Version, []byte("x"))
					if err == nil {
						accepted.Store(s.AgentState.Version, true)
					} else if !errors.Is(err, ErrConflict) {
						t.Errorf("update: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		nAccepted := 0
		accepted.Range(func(_, _ any) bool { nAccepted++; return true })

		for _, s := range []struct {
			id   string
			want int
		}{{sid, writers * perWriter * 4 / 5}, {sid2, writers * perWriter / 5}} {
			ms, err := allMessages(db, acct, s.id)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != s.want {
				t.Fatalf("session has %d messages, want %d", len(ms), s.want)
			}
			for i, m := range ms {
				if m.Seq != int64(i+1) {
					t.Fatalf("message %d has seq %d, want %d (gap or duplicate)", i, m.Seq, i+1)
				}
			}
		}
		ups := allUpdates(t, db, acct)
		wantN := 2 + writers*perWriter + nAccepted
		if len(ups) != wantN {
			t.Fatalf("%d updates, want %d", len(ups), wantN)
		}
		for i, u := range ups {
			if u.Seq != int64(i+1) {
				t.Fatalf("update %d has seq %d, want %d (gap or duplicate)", i, u.Seq, i+1)
			}
		}
		if s, _ := db.Session(ctx, acct, sid2); s.AgentState.Version != int64(1+nAccepted) {
			t.Fatalf("agent state version %d, want %d", s.AgentState.Version, 1+nAccepted)
		}
	})
}

func allMessages(db *DB, acct, sid string) ([]Message, error) {
	var all []Message
	var after int64
	for {
		ms, err := db.Messages(context.Background(), acct, sid, MessageQuery{AfterSeq: after, Limit: MaxPageLimit})
		if err != nil || len(ms) == 0 {
			return all, err
		}
		all = append(all, ms...)
		after = ms[len(ms)-1].Seq
	}
}
