package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// Revocations answers whether a credential's device or login session was
// revoked after the credential was issued. Access tokens are self-contained
// and stay verifiable until they expire; revoking a device or a login
// (logout, refresh-token reuse) must nevertheless refuse them at once,
// wherever they are presented (the WebSocket upgrade, REST, the in-band
// auth.refresh). It is implemented by the store, which is the source of
// truth shared by every node of a cluster.
type Revocations interface {
	// DeviceRevoked reports whether userID's device deviceID has been
	// revoked. A device the implementation does not know is not revoked
	// (tokens minted by an operator name no registered device). An error is
	// a fault (the store is unreachable), passed through unchanged.
	//
	// It is asked on every authentication of a device credential, so it
	// should answer from a cache; a revocation made through this process
	// must be seen at once, one made by another node after a short bound.
	DeviceRevoked(ctx context.Context, userID, deviceID string) (bool, error)

	// LoginRevoked reports whether userID's login session sessionID (the
	// "sid" claim of access tokens, the refresh token family of one login)
	// has been revoked: by logout, by the reuse of one of its refresh
	// tokens, or with its device. A login the implementation does not
	// know is not revoked (operator-minted tokens). Errors and caching are
	// as for DeviceRevoked.
	LoginRevoked(ctx context.Context, userID, sessionID string) (bool, error)
}

// CheckRevoked refuses p with a ReasonRevoked *Failure when its device or
// its login session has been revoked; for an app's principal, when its key
// has been revoked or deleted since, or, acting for a user, when the user
// uninstalled the app or narrowed the grant below p's scopes. A principal
// bound to no device is not checked for one and a principal bound to no
// login session is not checked for one, and token principals pass when the
// Authenticator has no Revocations. Any other error is a fault of
// Revocations, APIKeys or Installs. Authenticate calls it for tokens (an API
// key is looked up afresh anyway); callers call it again when a revocation
// may have committed meanwhile (after registering a connection).
func (a *Authenticator) CheckRevoked(ctx context.Context, p *Principal) error {
	if p != nil && p.AppID != "" {
		return a.checkAppRevoked(ctx, p)
	}
	if a.Revocations == nil || p == nil {
		return nil
	}
	if p.DeviceID != "" {
		revoked, err := a.Revocations.DeviceRevoked(ctx, p.UserID, p.DeviceID)
		switch {
		case err != nil:
			return fmt.Errorf("authenticate: revocation check of device %s: %w", p.DeviceID, err)
		case revoked:
			return fail(ReasonRevoked, fmt.Errorf("authenticate: device %s is revoked", p.DeviceID))
		}
	}
	if p.SessionID != "" {
		revoked, err := a.Revocations.LoginRevoked(ctx, p.UserID, p.SessionID)
		switch {
		case err != nil:
			return fmt.Errorf("authenticate: revocation check of login %s: %w", p.SessionID, err)
		case revoked:
			return fail(ReasonRevoked, fmt.Errorf("authenticate: login %s is revoked", p.SessionID))
		}
	}
	return nil
}

// checkAppRevoked is CheckRevoked for an app's principal.
func (a *Authenticator) checkAppRevoked(ctx context.Context, p *Principal) error {
	now, err := a.appScopesNow(ctx, p)
	if err != nil || now == nil {
		return err
	}
	for _, s := range p.Scopes {
		if !slices.Contains(now, s) {
			return fail(ReasonRevoked, fmt.Errorf("authenticate: app %s: scope %q is no longer granted", p.AppID, s))
		}
	}
	return nil
}

// appScopesNow returns the scopes app principal p, acting for a user, may
// hold now: those of its key the user still grants. It returns nil when
// there are no scopes to check (no API keys or installations configured,
// or p acts for no user: its key was checked), a ReasonRevoked
// *Failure when the key was revoked or deleted or the user uninstalled the
// app, and any other error as a fault.
func (a *Authenticator) appScopesNow(ctx context.Context, p *Principal) ([]string, error) {
	if a.APIKeys == nil {
		return nil, nil
	}
	_, kp, err := a.APIKeys.LookupAPIKey(ctx, p.TokenID)
	switch {
	case errors.Is(err, ErrRevoked), errors.Is(err, ErrUnknownAPIKey):
		return nil, fail(ReasonRevoked, fmt.Errorf("authenticate: api key %s: %w", p.TokenID, err))
	case err != nil:
		return nil, fmt.Errorf("authenticate: revocation check of api key %s: %w", p.TokenID, err)
	case kp == nil || kp.AppID != p.AppID:
		return nil, fail(ReasonRevoked, fmt.Errorf("authenticate: api key %s no longer belongs to app %s", p.TokenID, p.AppID))
	}
	if p.UserID == "" || a.Installs == nil {
		return nil, nil
	}
	granted, err := a.Installs.InstalledScopes(ctx, p.AppID, p.UserID)
	switch {
	case errors.Is(err, ErrNotInstalled):
		return nil, fail(ReasonRevoked, fmt.Errorf("authenticate: app %s: %w", p.AppID, err))
	case err != nil:
		return nil, fmt.Errorf("authenticate: installation check of app %s: %w", p.AppID, err)
	}
	return IntersectScopes(kp.Scopes, granted), nil
}

// Current returns what a connection authenticated as p may act as now: p
// itself when nothing was revoked since, or, for an app acting for a user
// who narrowed the grant since, a copy of p holding only the
// scopes still allowed — what the apps service gives the app's live
// connections when a grant narrows. It fails like CheckRevoked: a
// ReasonRevoked *Failure for a revoked device, login or key or an
// uninstalled app, any other error for a fault.
func (a *Authenticator) Current(ctx context.Context, p *Principal) (*Principal, error) {
	if p == nil || p.AppID == "" {
		return p, a.CheckRevoked(ctx, p)
	}
	now, err := a.appScopesNow(ctx, p)
	if err != nil || now == nil {
		return p, err
	}
	for _, s := range p.Scopes {
		if !slices.Contains(now, s) {
			np := *p
			np.Scopes = IntersectScopes(p.Scopes, now)
			return &np, nil
		}
	}
	return p, nil
}
