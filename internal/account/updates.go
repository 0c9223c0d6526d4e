package account

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

func checkUpdatesSince(p *protocol.UpdatesSince) error {
	if p.Since < 0 {
		return protocol.FieldError("since", "must not be negative")
	}
	if p.Limit < 0 || p.Limit > store.MaxUpdatesLimit {
		return protocol.FieldError("limit", "want 0..%d", store.MaxUpdatesLimit)
	}
	return nil
}

func (s *Service) updateOps() []Op {
	return []Op{define(s, Op{Name: "update.since", Scope: auth.ScopeRead, WS: true,
		Routes: []Route{{Method: "GET", Path: "/api/v1/updates", Status: http.StatusOK, OperationID: "updatesSince",
			Summary: "The account's updates after a seq, or reset", Tag: "Updates", Result: "Updates",
			Query: []QueryParam{
				{Name: "since", Member: "since", Type: "integer", Desc: "the last seq the client has (0 for all)", Required: true},
				{Name: "limit", Member: "limit", Type: "integer", Desc: "1..1000 (default 100)", Min: 1, Max: store.MaxUpdatesLimit},
			}}},
	}, protocol.Updates{}, checkUpdatesSince, s.updatesSince)}
}

func (s *Service) updatesSince(ctx context.Context, pr *auth.Principal, p *protocol.UpdatesSince) (any, error) {
	limit := p.Limit
	if limit == 0 {
		limit = 100
	}
	ups, reset, err := s.deps.Store.UpdatesSince(ctx, pr.UserID, p.Since, limit)
	if err != nil {
		return nil, err
	}
	res := protocol.Updates{Updates: nonNilSlice(wireAll(ups, wireUpdate)), Reset: reset, HasMore: len(ups) == limit}
	if reset {
		if res.Seq, err = s.deps.Store.UpdateSeq(ctx, pr.UserID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// publishUpdates publishes each update on the account's channel
// user:{userId} (subscribers receive channel.message events whose data is a
// protocol.UpdatePublication). Updates are published after their
// transaction committed; concurrent writers may publish out of seq order,
// so clients order by seq and fill a gap with update.since. A publication
// that fails is logged: the update is in the log, and update.since returns
// it.
func (s *Service) publishUpdates(ctx context.Context, userID string, ups []store.Update) {
	if len(ups) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	topic := "user:" + userID
	for _, u := range ups {
		data, err := json.Marshal(protocol.UpdatePublication{Update: wireUpdate(u)})
		if err == nil {
			_, err = s.deps.Hub.Publish(ctx, topic, data)
		}
		if err != nil {
			s.log.Warn("publish update", "user", userID, "seq", u.Seq, "err", err)
		}
	}
}
