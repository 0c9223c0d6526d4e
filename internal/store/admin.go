package store

import (
	"context"
	"fmt"
)

// Accounts returns one page of every account, newest first, and the cursor
// of the next page ("" when this is the last): for the admin API.
func (db *DB) Accounts(ctx context.Context, p Page) ([]Account, string, error) {
	limit, err := p.limit()
	if err != nil {
		return nil, "", fmt.Errorf("store: accounts: %w", err)
	}
	q := `SELECT id, public_key, created_at FROM accounts`
	args := []any{limit + 1}
	if p.Cursor != "" {
		after, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: accounts: %w", err)
		}
		q += ` WHERE id < $2`
		args = append(args, after)
	}
	q += ` ORDER BY id DESC LIMIT $1`
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("store: accounts: %w", err)
	}
	defer rows.Close()
	var as []Account
	for rows.Next() {
		var a Account
		var pub []byte
		var created int64
		if err := rows.Scan(&a.ID, &pub, &created); err != nil {
			return nil, "", fmt.Errorf("store: accounts: %w", err)
		}
		a.PublicKey, a.CreatedAt = pub, fromMicros(created)
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("store: accounts: %w", err)
	}
	next := ""
	if len(as) > limit {
		as = as[:limit]
		next = encodeCursor(as[limit-1].ID)
	}
	return as, next, nil
}
