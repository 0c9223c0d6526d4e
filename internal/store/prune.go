package store

import (
	"context"
	"log/slog"
	"time"
)

// PruneInterval is the interval at which the server runs PruneEvery.
const PruneInterval = 10 * time.Minute

// PruneEvery runs Prune every interval until ctx ends, the periodic
// maintenance of a serving process (expired idempotency records, pairing
// codes and refresh tokens; updates past Options.UpdateMaxAge). A failed
// Prune is logged as a warning and tried again at the next tick; each
// success is logged at debug level with what it removed. It returns when
// ctx ends; the caller owns the goroutine that runs it.
func (db *DB) PruneEvery(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st, err := db.Prune(ctx)
			if err != nil {
				if ctx.Err() == nil {
					log.Warn("store prune failed", "err", err)
				}
				continue
			}
			log.Debug("store pruned", "updates", st.Updates, "idempotency", st.Idempotency,
				"pairing_codes", st.PairingCodes, "refresh_tokens", st.RefreshTokens)
		}
	}
}
