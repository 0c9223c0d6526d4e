package web

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// UpdatesResult answers GET /api/v1/updates and update.since.
type UpdatesResult struct {
	// Updates are the updates after since, in seq order; empty with Reset.
	Updates []store.Update `json:"updates"`
	// Reset is true when the log no longer holds every update after since
	// (retention) or since is ahead of the account: the client must fetch
	// fresh state, then continue from Seq.
	Reset bool `json:"reset"`
	// Seq is the account's last update seq when Reset is true.
	Seq int64 `json:"seq,omitempty"`
	// HasMore is true when the page is full: ask again from the last seq.
	HasMore bool `json:"hasMore"`
}

type sinceParams struct {
	Since int64 `json:"since"`
	Limit int   `json:"limit,omitempty"`
}

func (p *sinceParams) check() error {
	if p.Since < 0 {
		return protocol.FieldError("since", "must not be negative")
	}
	if p.Limit < 0 || p.Limit > store.MaxUpdatesLimit {
		return protocol.FieldError("limit", "want 0..%d", store.MaxUpdatesLimit)
	}
	return nil
}

func (s *Server) updateRoutes() {
	since := op[sinceParams]{name: "update.since", scope: auth.ScopeRead, run: s.updatesSince}
	registerWS(s, since)
	registerREST(s, "GET /api/v1/updates", http.StatusOK, since, func(r *http.Request, p *sinceParams) error {
		if r.URL.Query().Get("since") == "" {
			return protocol.FieldError("since", "required")
		}
		var err error
		if p.Since, err = queryInt(r, "since"); err != nil {
			return err
		}
		n, err := queryInt(r, "limit")
		p.Limit = int(min(n, 1<<20))
		return err
	})
}

func (s *Server) updatesSince(ctx context.Context, pr *auth.Principal, p *sinceParams) (any, error) {
	limit := p.Limit
	if limit == 0 {
		limit = 100
	}
	ups, reset, err := s.deps.Store.UpdatesSince(ctx, pr.UserID, p.Since, limit)
	if err != nil {
		return nil, err
	}
	res := UpdatesResult{Updates: nonNilSlice(ups), Reset: reset, HasMore: len(ups) == limit}
	if reset {
		if res.Seq, err = s.deps.Store.UpdateSeq(ctx, pr.UserID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// UpdatePublication is the data of the channel publication that carries one
// update live on the account's channel user:{userId}.
type UpdatePublication struct {
	Update store.Update `json:"update"`
}

// publishUpdates publishes each update on the account's channel
// user:{userId} (subscribers receive channel.message events whose data is an
// UpdatePublication). Updates are published after their transaction
// committed; concurrent writers may publish out of seq order, so clients
// order by seq and fill a gap with update.since. A publication that fails is
// logged: the update is in the log, and update.since returns it.
func (s *Server) publishUpdates(ctx context.Context, userID string, ups []store.Update) {
	if len(ups) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	topic := "user:" + userID
	for _, u := range ups {
		data, err := json.Marshal(UpdatePublication{Update: u})
		if err == nil {
			_, err = s.deps.Hub.Publish(ctx, topic, data)
		}
		if err != nil {
			s.log.Warn("publish update", "user", userID, "seq", u.Seq, "err", err)
		}
	}
}
