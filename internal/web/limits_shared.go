package web

import (
	"context"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// SharedRates is a token bucket per key kept where every node sees it (a
// cluster's Redis), so that web.principal_rate holds for a user across
// nodes (Deps.Rates). The methods use only standard types, so that the
// broker satisfies the interface without importing web.
type SharedRates interface {
	// TakeToken takes one token from key's bucket (rate tokens a second,
	// at most burst): ok false with the wait until one is there.
	TakeToken(ctx context.Context, key string, rate float64, burst int) (wait time.Duration, ok bool, err error)
}

// sharedRateTimeout bounds the shared bucket's call in a request.
const sharedRateTimeout = time.Second

// limitPrincipalShared applies web.principal_rate across the cluster, after
// this node's own bucket (limitPrincipal) let the request through. A shared
// bucket that cannot be reached lets it through too (logged): the node's
// bucket still applies.
func (s *Server) limitPrincipalShared(ctx context.Context, p *auth.Principal) *protocol.Error {
	if s.deps.Rates == nil || s.cfg.PrincipalRate < 0 || p.HasScope(auth.ScopeAdmin) {
		return nil
	}
	rate, burst := s.cfg.PrincipalRate, s.cfg.PrincipalBurst
	if rate == 0 {
		rate = DefaultPrincipalRate
	}
	if burst <= 0 {
		burst = DefaultPrincipalBurst
	}
	ctx, cancel := context.WithTimeout(ctx, sharedRateTimeout)
	defer cancel()
	wait, ok, err := s.deps.Rates.TakeToken(ctx, "principal:"+principalKey(p), float64(rate), burst)
	if err != nil {
		s.log.Warn("shared rate limit unavailable: this node's limit applies alone", "err", err)
		return nil
	}
	if !ok {
		return s.rateLimited(limitPrincipalRate, wait, "requests for this credential")
	}
	return nil
}
