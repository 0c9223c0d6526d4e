package store

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"testing"
)

// FuzzListCursor feeds client-supplied cursors and limits to a real list
// (sessions, SQLite): a cursor that does not decode, or a limit over
// MaxPageLimit, is ErrInvalid; any other gives the page of the reference
// (the ids below the cursor's, newest first) and a next cursor that
// decodes to the page's last id.
func FuzzListCursor(f *testing.F) {
	db := openDSN(f, testDSN(f, "sqlite"), Options{})
	ctx := context.Background()
	acct := newAccount(f, db)
	var ids []string
	for range 5 {
		s, _, err := db.CreateSession(ctx, acct, nil, nil)
		if err != nil {
			f.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	seeds := []string{"", "!!bad", "bzp4", "bzp4==", encodeCursor(""), encodeCursor("' OR 1=1 --"), encodeCursor("zzzz"), encodeCursor("\x00"),
		base64.RawURLEncoding.EncodeToString([]byte("x:" + ids[0]))}
	for _, id := range ids {
		seeds = append(seeds, encodeCursor(id))
	}
	for i, s := range seeds {
		f.Add(s, int8(i%4))
	}
	f.Fuzz(func(t *testing.T, cursor string, limit int8) {
		page, next, err := db.Sessions(ctx, acct, Page{Cursor: cursor, Limit: int(limit)})
		after, cerr := decodeCursor(cursor)
		switch {
		case cursor != "" && cerr != nil || int(limit) > MaxPageLimit:
			if !errors.Is(err, ErrInvalid) || len(page) != 0 || next != "" {
				t.Fatalf("cursor %q limit %d: got %d sessions, next %q, error %v; want ErrInvalid", cursor, limit, len(page), next, err)
			}
			return
		case err != nil:
			t.Fatalf("cursor %q limit %d: %v", cursor, limit, err)
		}
		if cerr == nil && (after == "" || decodeCursorMust(t, encodeCursor(after)) != after) {
			t.Fatalf("cursor %q decodes to %q, which does not round-trip", cursor, after)
		}
		n := int(limit)
		if n <= 0 {
			n = DefaultPageLimit
		}
		var want []string
		for _, id := range ids {
			if cursor == "" || id < after {
				want = append(want, id)
			}
		}
		wantNext := ""
		if len(want) > n {
			want = want[:n]
			wantNext = want[n-1]
		}
		var got []string
		for _, s := range page {
			got = append(got, s.ID)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("cursor %q (after %q) limit %d: got %q, want %q", cursor, after, limit, got, want)
		}
		if wantNext == "" && next != "" || wantNext != "" && decodeCursorMust(t, next) != wantNext {
			t.Fatalf("cursor %q limit %d: next %q, want one for %q", cursor, limit, next, wantNext)
		}
	})
}

func decodeCursorMust(t *testing.T, c string) string {
	t.Helper()
	id, err := decodeCursor(c)
	if err != nil {
		t.Fatalf("decodeCursor(%q): %v", c, err)
	}
	return id
}
