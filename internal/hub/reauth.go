package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// ReauthorizeFrom replaces the principal of c with p after a change of
// permissions that leaves the identity alone (an app's installation
// narrowed, the expiry of its key moved by a rotation), and rechecks c's
// channel subscriptions under p at once: those p may no longer hold are
// dropped with channel.unsubscribed (reason "forbidden"). Later requests
// are checked against p; a new ExpiresAt is watched like a refreshed
// token's. p must name the same user, device, app and kind as the current
// principal; to change the identity, close the connection.
//
// from is the principal p was derived from: when c's principal is no
// longer from (another change replaced it meanwhile), nothing changes and
// ReauthorizeFrom reports false; the caller derives again from the current
// one (Amend does). So concurrent narrowings never undo one another: one
// derived from a principal that another has narrowed since is not stored.
func (h *Hub) ReauthorizeFrom(ctx context.Context, c *Conn, from, p *auth.Principal) (bool, error) {
	if p == nil || from == nil || p.UserID != from.UserID || p.DeviceID != from.DeviceID || p.AppID != from.AppID || p.Kind != from.Kind {
		return false, errors.New("hub: reauthorize: the new principal has another identity")
	}
	if c.Closed() {
		return true, nil
	}
	if !c.principal.CompareAndSwap(from, p) {
		return false, nil
	}
	h.expiry.renewed(c)
	return true, h.recheckSubscriptions(ctx, c, p)
}

// maxAmends bounds the attempts of Amend: each failed one means another
// change replaced the principal meanwhile, which takes a grant change or a
// rotation, so this many in a row is a storm; the caller fails closed.
const maxAmends = 8

// Amend replaces c's principal with change applied to it (see
// ReauthorizeFrom), deriving it again when another change lands in
// between. change must not modify its argument's slices in place (they
// are the current principal's).
func (h *Hub) Amend(ctx context.Context, c *Conn, change func(auth.Principal) auth.Principal) error {
	for range maxAmends {
		cur := c.Principal()
		np := change(*cur)
		ok, err := h.ReauthorizeFrom(ctx, c, cur, &np)
		if ok || err != nil {
			return err
		}
	}
	return fmt.Errorf("hub: reauthorize: the principal of %s changed %d times in a row", c.ID(), maxAmends)
}

// recheckSubscriptions drops c's subscriptions p may no longer hold.
func (h *Hub) recheckSubscriptions(ctx context.Context, c *Conn, p *auth.Principal) error {
	cs := connSubsOf(c)
	if cs == nil {
		return nil
	}
	cs.mu.Lock()
	subs := cs.list()
	cs.mu.Unlock()
	for _, s := range subs {
		ns, t, err := h.ch.resolve(s.topic)
		if err == nil {
			err = ns.authorize(ctx, p, t, actSubscribe)
		}
		if err == nil {
			continue
		}
		if pe := protocol.AsError(err); pe.Code == protocol.CodeForbidden || pe.Code == protocol.CodeUnauthorized || pe.Code == protocol.CodeNotFound {
			h.dropSubscriber(s, "forbidden", false)
			continue
		}
		return err // an owner lookup failed: the caller decides (closing fails closed)
	}
	return nil
}
