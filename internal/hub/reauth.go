package hub

import (
	"context"
	"errors"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// Reauthorize replaces the principal of c with p after a change of
// permissions that leaves the identity alone (an app's installation
// narrowed, the expiry of its key moved by a rotation), and rechecks c's
// channel subscriptions under p at once: those p may no longer hold are
// dropped with channel.unsubscribed (reason "forbidden"). Later requests
// are checked against p; a new ExpiresAt is watched like a refreshed
// token's. p must name the same user, device, app and kind as the current
// principal; to change the identity, close the connection.
func (h *Hub) Reauthorize(ctx context.Context, c *Conn, p *auth.Principal) error {
	old := c.Principal()
	if p == nil || p.UserID != old.UserID || p.DeviceID != old.DeviceID || p.AppID != old.AppID || p.Kind != old.Kind {
		return errors.New("hub: reauthorize: the new principal has another identity")
	}
	if c.Closed() {
		return nil
	}
	c.principal.Store(p)
	h.expiry.renewed(c)
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
