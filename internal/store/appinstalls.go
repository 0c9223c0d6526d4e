package store

import (
	"context"
	"fmt"
	"time"
)

// InstallActivity is an installation with what its user did with the app:
// the operator's view of one install (the admin list of an app's
// installations).
type InstallActivity struct {
	Install
	// ActiveSessions counts the user's sessions of the app that are not
	// stopped.
	ActiveSessions int64
	// LastSessionAt is when the user's latest session of the app was
	// created; zero when the user never started one.
	LastSessionAt time.Time
}

// InstallsOfAppWithActivity returns up to limit (<= 0: DefaultPageLimit; at
// most MaxPageLimit) of an app's installations with user ids after after,
// in user id order, each with its user's session activity, and whether more
// follow. An unknown app has none (the caller checks that the app exists).
func (db *DB) InstallsOfAppWithActivity(ctx context.Context, appID, after string, limit int) ([]InstallActivity, bool, error) {
	n, err := Page{Limit: limit}.limit()
	if err != nil {
		return nil, false, fmt.Errorf("store: installs with activity: %w", err)
	}
	// Correlated subqueries over app_sessions_app_user (app_id, user_id,
	// created_at): each install reads only its user's sessions of the app.
	rows, err := db.r.QueryContext(ctx, `SELECT i.app_id, i.user_id, i.scopes, i.created_at, i.updated_at,
		(SELECT COUNT(*) FROM app_sessions s WHERE s.app_id = i.app_id AND s.user_id = i.user_id AND s.state <> 'stopped'),
		(SELECT COALESCE(MAX(s.created_at), 0) FROM app_sessions s WHERE s.app_id = i.app_id AND s.user_id = i.user_id)
		FROM app_installs i WHERE i.app_id = $1 AND i.user_id > $2 ORDER BY i.user_id LIMIT $3`, appID, after, n+1)
	if err != nil {
		return nil, false, fmt.Errorf("store: installs with activity: %w", err)
	}
	out, err := collect(rows, scanInstallActivity)
	if err != nil {
		return nil, false, fmt.Errorf("store: installs with activity: %w", err)
	}
	if len(out) > n {
		return out[:n], true, nil
	}
	return out, false, nil
}

func scanInstallActivity(row scanner) (InstallActivity, error) {
	var a InstallActivity
	var last int64
	in, err := scanInstall(scanTail{row, []any{&a.ActiveSessions, &last}})
	if err != nil {
		return InstallActivity{}, err
	}
	a.Install, a.LastSessionAt = in, fromMicros(last)
	return a, nil
}

// scanTail is a scanner that hands the leading columns to its caller's
// destinations and the trailing ones to tail.
type scanTail struct {
	row  scanner
	tail []any
}

func (s scanTail) Scan(dest ...any) error { return s.row.Scan(append(dest, s.tail...)...) }
