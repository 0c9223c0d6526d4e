package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"testing"
)

// objectAPI adapts the typed methods of one object type to one shape, so
// the same table test covers sessions, machines and artifacts.
type objectAPI struct {
	name   string
	kind   string // update kind prefix
	fields [2]string
	create func(ctx context.Context, db *DB, acct string, a, b []byte) (string, [2]Versioned, []Update, error)
	get    func(ctx context.Context, db *DB, acct, id string) ([2]Versioned, error)
	list   func(ctx context.Context, db *DB, acct string, p Page) ([]string, string, error)
	update [2]func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error)
	delete func(ctx context.Context, db *DB, acct, id string) ([]Update, error)
}

var objectAPIs = []objectAPI{
	{
		name: "session", kind: "session", fields: [2]string{"metadata", "agentState"},
		create: func(ctx context.Context, db *DB, acct string, a, b []byte) (string, [2]Versioned, []Update, error) {
			s, u, err := db.CreateSession(ctx, acct, a, b)
			return s.ID, [2]Versioned{s.Metadata, s.AgentState}, u, err
		},
		get: func(ctx context.Context, db *DB, acct, id string) ([2]Versioned, error) {
			s, err := db.Session(ctx, acct, id)
			return [2]Versioned{s.Metadata, s.AgentState}, err
		},
		list: func(ctx context.Context, db *DB, acct string, p Page) ([]string, string, error) {
			ss, next, err := db.Sessions(ctx, acct, p)
			var ids []string
			for _, s := range ss {
				ids = append(ids, s.ID)
			}
			return ids, next, err
		},
		update: [2]func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error){
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				s, u, err := db.UpdateSessionMetadata(ctx, acct, id, exp, v)
				return [2]Versioned{s.Metadata, s.AgentState}, u, err
			},
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				s, u, err := db.UpdateSessionAgentState(ctx, acct, id, exp, v)
				return [2]Versioned{s.Metadata, s.AgentState}, u, err
			},
		},
		delete: func(ctx context.Context, db *DB, acct, id string) ([]Update, error) {
			return db.DeleteSession(ctx, acct, id)
		},
	},
	{
		name: "machine", kind: "machine", fields: [2]string{"metadata", "daemonState"},
		create: func(ctx context.Context, db *DB, acct string, a, b []byte) (string, [2]Versioned, []Update, error) {
			m, u, err := db.CreateMachine(ctx, acct, a, b)
			return m.ID, [2]Versioned{m.Metadata, m.DaemonState}, u, err
		},
		get: func(ctx context.Context, db *DB, acct, id string) ([2]Versioned, error) {
			m, err := db.Machine(ctx, acct, id)
			return [2]Versioned{m.Metadata, m.DaemonState}, err
		},
		list: func(ctx context.Context, db *DB, acct string, p Page) ([]string, string, error) {
			ms, next, err := db.Machines(ctx, acct, p)
			var ids []string
			for _, m := range ms {
				ids = append(ids, m.ID)
			}
			return ids, next, err
		},
		update: [2]func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error){
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				m, u, err := db.UpdateMachineMetadata(ctx, acct, id, exp, v)
				return [2]Versioned{m.Metadata, m.DaemonState}, u, err
			},
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				m, u, err := db.UpdateMachineDaemonState(ctx, acct, id, exp, v)
				return [2]Versioned{m.Metadata, m.DaemonState}, u, err
			},
		},
		delete: func(ctx context.Context, db *DB, acct, id string) ([]Update, error) {
			return db.DeleteMachine(ctx, acct, id)
		},
	},
	{
		name: "artifact", kind: "artifact", fields: [2]string{"header", "body"},
		create: func(ctx context.Context, db *DB, acct string, a, b []byte) (string, [2]Versioned, []Update, error) {
			x, u, err := db.CreateArtifact(ctx, acct, a, b)
			return x.ID, [2]Versioned{x.Header, x.Body}, u, err
		},
		get: func(ctx context.Context, db *DB, acct, id string) ([2]Versioned, error) {
			x, err := db.Artifact(ctx, acct, id)
			return [2]Versioned{x.Header, x.Body}, err
		},
		list: func(ctx context.Context, db *DB, acct string, p Page) ([]string, string, error) {
			xs, next, err := db.Artifacts(ctx, acct, p)
			var ids []string
			for _, x := range xs {
				ids = append(ids, x.ID)
			}
			return ids, next, err
		},
		update: [2]func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error){
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				x, u, err := db.UpdateArtifactHeader(ctx, acct, id, exp, v)
				return [2]Versioned{x.Header, x.Body}, u, err
			},
			func(ctx context.Context, db *DB, acct, id string, exp int64, v []byte) ([2]Versioned, []Update, error) {
				x, u, err := db.UpdateArtifactBody(ctx, acct, id, exp, v)
				return [2]Versioned{x.Header, x.Body}, u, err
			},
		},
		delete: func(ctx context.Context, db *DB, acct, id string) ([]Update, error) {
			return db.DeleteArtifact(ctx, acct, id)
		},
	},
}

func TestObjects(t *testing.T) {
	eachBackend(t, Options{MaxValueBytes: 1024}, func(t *testing.T, db *DB) {
		for _, api := range objectAPIs {
			t.Run(api.name, func(t *testing.T) {
				testObject(t, db, api)
			})
		}
	})
}

func testObject(t *testing.T, db *DB, api objectAPI) {
	ctx := t.Context()
	acct, other := newAccount(t, db), newAccount(t, db)

	id, vs, ups, err := api.create(ctx, db, acct, []byte("a0"), []byte("b0"))
	if err != nil {
		t.Fatal(err)
	}
	if vs[0].Version != 1 || vs[1].Version != 1 || string(vs[0].Value) != "a0" || string(vs[1].Value) != "b0" {
		t.Fatalf("create = %+v, want a0/b0 at version 1", vs)
	}
	if len(ups) != 1 || ups[0].Kind != api.kind+".created" || ups[0].ID != id || ups[0].Version != 1 {
		t.Fatalf("create updates = %+v", ups)
	}

	// Each field has its own version; the other field is untouched.
	steps := []struct {
		name      string
		field     int
		expected  int64
		value     string
		wantVers  [2]int64
		wantErr   error
		wantCurr  int64
		wantValue string
	}{
		{"field 0 from 1", 0, 1, "a1", [2]int64{2, 1}, nil, 0, ""},
		{"field 1 from 1", 1, 1, "b1", [2]int64{2, 2}, nil, 0, ""},
		{"field 0 stale", 0, 1, "lost", [2]int64{2, 2}, ErrConflict, 2, "a1"},
		{"field 1 future", 1, 9, "lost", [2]int64{2, 2}, ErrConflict, 2, "b1"},
		{"field 0 from 2", 0, 2, "a2", [2]int64{3, 2}, nil, 0, ""},
	}
	for _, st := range steps {
		seqBefore, _ := db.UpdateSeq(ctx, acct)
		got, ups, err := api.update[st.field](ctx, db, acct, id, st.expected, []byte(st.value))
		if st.wantErr != nil {
			var ce *ConflictError
			if !errors.Is(err, st.wantErr) || !errors.As(err, &ce) {
				t.Fatalf("%s: got error %v, want *ConflictError", st.name, err)
			}
			if ce.Current != st.wantCurr || string(ce.Value) != st.wantValue {
				t.Fatalf("%s: conflict = current %d value %q, want %d %q", st.name, ce.Current, ce.Value, st.wantCurr, st.wantValue)
			}
			if seq, _ := db.UpdateSeq(ctx, acct); seq != seqBefore {
				t.Fatalf("%s: a conflict moved the update seq %d -> %d", st.name, seqBefore, seq)
			}
		} else {
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if len(ups) != 1 || ups[0].Kind != api.kind+".updated" || ups[0].Version != st.wantVers[st.field] || ups[0].Seq != seqBefore+1 {
				t.Fatalf("%s: updates = %+v", st.name, ups)
			}
			var body map[string]json.RawMessage
			json.Unmarshal(ups[0].Body, &body)
			if _, ok := body[api.fields[st.field]]; !ok || len(body) != 2 {
				t.Fatalf("%s: update body %s, want id and %s", st.name, ups[0].Body, api.fields[st.field])
			}
			if string(got[st.field].Value) != st.value {
				t.Fatalf("%s: value %q, want %q", st.name, got[st.field].Value, st.value)
			}
		}
		cur, err := api.get(ctx, db, acct, id)
		if err != nil || cur[0].Version != st.wantVers[0] || cur[1].Version != st.wantVers[1] {
			t.Fatalf("%s: stored versions %d,%d (err %v), want %v", st.name, cur[0].Version, cur[1].Version, err, st.wantVers)
		}
	}

	// Too large: rejected, nothing changes.
	_, _, err = api.update[0](ctx, db, acct, id, 3, make([]byte, 1025))
	wantErr(t, "update over MaxValueBytes", err, ErrTooLarge)
	if cur, _ := api.get(ctx, db, acct, id); cur[0].Version != 3 {
		t.Fatalf("too-large update changed version to %d", cur[0].Version)
	}
	_, _, _, err = api.create(ctx, db, acct, nil, make([]byte, 1025))
	wantErr(t, "create over MaxValueBytes", err, ErrTooLarge)

	// Another account sees nothing.
	_, err = api.get(ctx, db, other, id)
	wantErr(t, "get from other account", err, ErrNotFound)
	_, _, err = api.update[0](ctx, db, other, id, 3, []byte("x"))
	wantErr(t, "update from other account", err, ErrNotFound)
	_, err = api.delete(ctx, db, other, id)
	wantErr(t, "delete from other account", err, ErrNotFound)
	_, _, _, err = api.create(ctx, db, "no-such-account", nil, nil)
	wantErr(t, "create for unknown account", err, ErrNotFound)

	// Pagination: 7 objects, pages of 3, newest first, each id once.
	ids := []string{id}
	for i := 0; i < 6; i++ {
		id, _, _, err := api.create(ctx, db, acct, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ids)))
	var got []string
	var pages []int
	cursor := ""
	for {
		page, next, err := api.list(ctx, db, acct, Page{Cursor: cursor, Limit: 3})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		pages = append(pages, len(page))
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(ids) || len(pages) != 3 || pages[0] != 3 || pages[2] != 1 {
		t.Fatalf("paged list = %v in pages %v, want %d ids in pages [3 3 1]", got, pages, len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("paged list = %v, want %v", got, ids)
		}
	}
	_, _, err = api.list(ctx, db, acct, Page{Cursor: "!!bad"})
	wantErr(t, "list with bad cursor", err, ErrInvalid)
	_, _, err = api.list(ctx, db, acct, Page{Limit: MaxPageLimit + 1})
	wantErr(t, "list over max limit", err, ErrInvalid)
	if page, _, _ := api.list(ctx, db, other, Page{}); len(page) != 0 {
		t.Fatalf("other account lists %d objects, want 0", len(page))
	}

	ups, err = api.delete(ctx, db, acct, id)
	if err != nil || len(ups) != 1 || ups[0].Kind != api.kind+".deleted" || ups[0].ID != id {
		t.Fatalf("delete = %+v, %v", ups, err)
	}
	_, err = api.get(ctx, db, acct, id)
	wantErr(t, "get after delete", err, ErrNotFound)
	_, err = api.delete(ctx, db, acct, id)
	wantErr(t, "delete twice", err, ErrNotFound)
}

// TestCiphertextStoredAsGiven stores random bytes (NULs, invalid UTF-8)
// and reads the raw columns back: the server keeps exactly what it got.
func TestCiphertextStoredAsGiven(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		acct := newAccount(t, db)
		meta, state, body := randBytes(t, 4096), randBytes(t, 1), randBytes(t, 65536)
		meta[0], meta[1] = 0, 0xff
		s, _, err := db.CreateSession(ctx, acct, meta, state)
		if err != nil {
			t.Fatal(err)
		}
		msgs, _, err := db.AppendMessages(ctx, acct, s.ID, []NewMessage{{LocalID: "l", Body: body}})
		if err != nil {
			t.Fatal(err)
		}
		hdr, abody := randBytes(t, 300), randBytes(t, 1<<20)
		a, _, err := db.CreateArtifact(ctx, acct, hdr, abody)
		if err != nil {
			t.Fatal(err)
		}
		raw := []struct {
			name, query, id string
			want            []byte
		}{
			{"sessions.metadata", `SELECT metadata FROM sessions WHERE id = $1`, s.ID, meta},
			{"sessions.agent_state", `SELECT agent_state FROM sessions WHERE id = $1`, s.ID, state},
			{"messages.body", `SELECT body FROM messages WHERE id = $1`, msgs[0].ID, body},
			{"artifacts.header", `SELECT header FROM artifacts WHERE id = $1`, a.ID, hdr},
			{"artifacts.body", `SELECT body FROM artifacts WHERE id = $1`, a.ID, abody},
		}
		for _, r := range raw {
			var got []byte
			if err := db.r.QueryRowContext(ctx, r.query, r.id).Scan(&got); err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			if !bytes.Equal(got, r.want) {
				t.Fatalf("%s: raw column has %d bytes differing from the %d given", r.name, len(got), len(r.want))
			}
		}
		// And the column type is binary, not text.
		var typ string
		q := `SELECT typeof(metadata) FROM sessions WHERE id = $1`
		if db.dialect == dialectPostgres {
			q = `SELECT pg_typeof(metadata)::text FROM sessions WHERE id = $1`
		}
		if err := db.r.QueryRowContext(ctx, q, s.ID).Scan(&typ); err != nil || (typ != "blob" && typ != "bytea") {
			t.Fatalf("metadata column type = %q (%v), want blob or bytea", typ, err)
		}
	})
}
