package auth

import (
	"context"
	"fmt"
)

// Revocations answers whether a credential's device was revoked after the
// credential was issued. Access tokens are self-contained and stay
// verifiable until they expire; revoking a device must nevertheless refuse
// them at once, wherever they are presented (the WebSocket upgrade, REST,
// the in-band auth.refresh). It is implemented by the store.
type Revocations interface {
	// DeviceRevoked reports whether userID's device deviceID has been
	// revoked. A device the implementation does not know is not revoked
	// (tokens minted by an operator name no registered device). An error is
	// a fault (the store is unreachable), passed through unchanged.
	//
	// It is asked on every authentication of a device credential, so it
	// should answer from a cache; a revocation made through this process
	// must be seen at once.
	DeviceRevoked(ctx context.Context, userID, deviceID string) (bool, error)
}

// CheckRevoked refuses p with a ReasonRevoked *Failure when its device has
// been revoked. Principals of API keys (whose revocation the key store
// reports) and principals bound to no device pass, and so does every
// principal when the Authenticator has no Revocations. Any other error is a
// fault of Revocations. Authenticate calls it; callers call it again when a
// revocation may have committed meanwhile (after registering a connection).
func (a *Authenticator) CheckRevoked(ctx context.Context, p *Principal) error {
	if a.Revocations == nil || p == nil || p.AppID != "" || p.DeviceID == "" {
		return nil
	}
	revoked, err := a.Revocations.DeviceRevoked(ctx, p.UserID, p.DeviceID)
	switch {
	case err != nil:
		return fmt.Errorf("authenticate: revocation check of device %s: %w", p.DeviceID, err)
	case revoked:
		return fail(ReasonRevoked, fmt.Errorf("authenticate: device %s is revoked", p.DeviceID))
	}
	return nil
}
