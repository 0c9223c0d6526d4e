package store

import (
	"errors"
	"slices"
	"testing"
)

// TestAccountsPages lists every account, newest first, a page at a time.
func TestAccountsPages(t *testing.T) {
	eachBackend(t, Options{}, func(t *testing.T, db *DB) {
		ctx := t.Context()
		var want []string
		for range 5 {
			want = append([]string{newAccount(t, db)}, want...) // newest first
		}
		all, next, err := db.Accounts(ctx, Page{})
		if err != nil || next != "" {
			t.Fatalf("Accounts: next %q, %v; want the one page", next, err)
		}
		var got []string
		for _, a := range all {
			got = append(got, a.ID)
			if len(a.PublicKey) != 32 || a.CreatedAt.IsZero() {
				t.Errorf("account %s: public key %d bytes, created %v", a.ID, len(a.PublicKey), a.CreatedAt)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Accounts: got %v, want %v", got, want)
		}
		got = nil
		cursor := ""
		for range 10 {
			page, next, err := db.Accounts(ctx, Page{Cursor: cursor, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 2 {
				t.Fatalf("page of %d, want at most 2", len(page))
			}
			for _, a := range page {
				got = append(got, a.ID)
			}
			if cursor = next; cursor == "" {
				break
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Accounts by 2: got %v, want %v", got, want)
		}
		for _, p := range []Page{{Cursor: "!!"}, {Limit: MaxPageLimit + 1}} {
			if _, _, err := db.Accounts(ctx, p); !errors.Is(err, ErrInvalid) {
				t.Errorf("Accounts(%+v): got %v, want ErrInvalid", p, err)
			}
		}
	})
}
