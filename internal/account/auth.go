package account

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// refreshPrefix starts every refresh token, so that a leaked one is easy to
// recognise (secret scanners) and never mistaken for an access token.
const refreshPrefix = "jrt_"

// checkDeviceInfo checks d and fills its defaults (kind browser, name the
// kind).
func checkDeviceInfo(d *protocol.DeviceInfo, field string) error {
	if d.Kind == "" {
		d.Kind = "browser"
	}
	if !auth.ValidKind(d.Kind) {
		return protocol.FieldError(field+".kind", "unknown kind %q", d.Kind)
	}
	if len(d.Name) > 256 {
		return protocol.FieldError(field+".name", "over 256 bytes")
	}
	if d.Name == "" {
		d.Name = d.Kind
	}
	if len(d.ID) > 64 {
		return protocol.FieldError(field+".id", "over 64 bytes")
	}
	return nil
}

func (s *Service) authOps() []Op {
	return []Op{
		define(s, Op{Name: "auth.challenge",
			Routes: []Route{{Method: "POST", Path: "/api/v1/auth/challenge", Status: http.StatusOK, OperationID: "challenge",
				Summary: "Get a single-use login nonce for a public key (valid 5 minutes; rate-limited per client address: 429 with Retry-After)", Tag: "Auth", Body: "ChallengeRequest", Result: "Challenge"}},
		}, protocol.Challenge{}, nil, s.challenge),
		define(s, Op{Name: "auth.login",
			Routes: []Route{{Method: "POST", Path: "/api/v1/auth/login", Status: http.StatusOK, OperationID: "login",
				Summary: "Log in with an ed25519 signature of the nonce; the first login of a key creates the account", Tag: "Auth", Body: "LoginRequest", Result: "Tokens"}},
		}, protocol.Tokens{}, nil, s.login),
		define(s, Op{Name: "auth.refresh",
			Routes: []Route{{Method: "POST", Path: "/api/v1/auth/refresh", Status: http.StatusOK, OperationID: "refresh",
				Summary: "Rotate a refresh token; reusing an old one revokes the whole login", Tag: "Auth", Body: "RefreshRequest", Result: "Tokens"}},
		}, protocol.Tokens{}, nil, s.refresh),
		define(s, Op{Name: "auth.logout", Scope: hub.ScopeAuthenticated, Mutating: true, NoApps: true,
			Routes: []Route{{Method: "POST", Path: "/api/v1/auth/logout", Status: http.StatusOK, OperationID: "logout",
				Summary: "Revoke the refresh tokens of the caller's login session", Tag: "Auth", Result: "LoggedOut"}},
		}, protocol.LoggedOut{}, nil, s.logout),
		define(s, Op{Name: "auth.me", Scope: hub.ScopeAuthenticated,
			Routes: []Route{{Method: "GET", Path: "/api/v1/auth/me", Status: http.StatusOK, OperationID: "me",
				Summary: "The caller's account, device and scopes", Tag: "Auth", Result: "Me"}},
		}, protocol.Me{}, nil, s.me),
	}
}

func decodeKey(field, s string) (ed25519.PublicKey, error) {
	if s == "" {
		return nil, protocol.FieldError(field, "required")
	}
	b, err := decodeB64(field, s)
	if err != nil {
		return nil, err
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, protocol.FieldError(field, "want a %d-byte ed25519 public key", ed25519.PublicKeySize)
	}
	return b, nil
}

func (s *Service) challenge(ctx context.Context, _ *auth.Principal, req *protocol.ChallengeRequest) (any, error) {
	pub, err := decodeKey("publicKey", req.PublicKey)
	if err != nil {
		return nil, err
	}
	client, _ := ctx.Value(clientKey{}).(string)
	nonce, exp, err := s.challenges.IssueContext(ctx, client, pub)
	if le, ok := errors.AsType[*auth.ChallengeLimitError](err); ok {
		retry := max(le.RetryAfter.Milliseconds(), 1)
		if le.Full {
			return nil, &protocol.Error{Code: protocol.CodeUnavailable, Message: "too many login challenges outstanding, retry later", Retryable: true, RetryAfterMs: retry}
		}
		return nil, &protocol.Error{Code: protocol.CodeRateLimited, Message: "too many login challenges from this address, retry later", Retryable: true, RetryAfterMs: retry}
	}
	if err != nil {
		return nil, err
	}
	return protocol.Challenge{Nonce: base64.StdEncoding.EncodeToString(nonce), ExpiresAt: exp.UTC()}, nil
}

func (s *Service) login(ctx context.Context, _ *auth.Principal, req *protocol.LoginRequest) (any, error) {
	pub, err := decodeKey("publicKey", req.PublicKey)
	if err != nil {
		return nil, err
	}
	nonce, err := requiredB64("nonce", req.Nonce)
	if err != nil {
		return nil, err
	}
	sig, err := requiredB64("signature", req.Signature)
	if err != nil {
		return nil, err
	}
	dev, err := checkedDevice(req.Device)
	if err != nil {
		return nil, err
	}
	if dev.PublicKey != "" {
		return nil, protocol.FieldError("device.publicKey", "not accepted at login: the login key is the device's key")
	}
	// The nonce is consumed only by a valid signature (a forged attempt
	// cannot burn it), and only once: a replayed nonce or signature fails.
	if err := s.challenges.VerifyContext(ctx, pub, nonce, sig); err != nil {
		if _, ok := errors.AsType[*auth.Failure](err); !ok {
			return nil, err // the shared nonces cannot be reached: unavailable
		}
		reason := auth.FailureReason(err)
		return nil, authFailure(reason, protocol.Errorf(protocol.CodeUnauthorized, "login failed: %s", reason))
	}
	acct, created, err := s.deps.Store.AccountForKey(ctx, pub)
	if err != nil {
		return nil, err
	}
	var device store.Device
	if dev.ID != "" {
		device, err = s.deps.Store.Device(ctx, acct.ID, dev.ID)
		if err != nil {
			return nil, err
		}
		if device.Revoked() {
			return nil, protocol.Errorf(protocol.CodeForbidden, "device %s is revoked", dev.ID)
		}
	} else {
		var ups []store.Update
		device, ups, err = s.deps.Store.CreateDevice(ctx, acct.ID, store.NewDevice{Kind: dev.Kind, Name: dev.Name, PublicKey: pub})
		if err != nil {
			return nil, err
		}
		s.publishUpdates(ctx, acct.ID, ups)
	}
	res, err := s.issueTokens(ctx, acct.ID, device)
	if err != nil {
		return nil, err
	}
	res.Created = created
	s.log.Info("login", "user", acct.ID, "device", device.ID, "created", created)
	return res, nil
}

// issueTokens starts a login session for device: a new refresh token family
// whose id is the session id ("sid"), and an access token.
func (s *Service) issueTokens(ctx context.Context, account string, device store.Device) (protocol.Tokens, error) {
	sid := randomToken(16)
	refresh := refreshPrefix + randomToken(32)
	if _, err := s.deps.Store.CreateRefresh(ctx, store.NewRefresh{
		Hash: store.HashToken(refresh), FamilyID: sid, AccountID: account, DeviceID: device.ID, SessionID: sid,
		ExpiresAt: time.Now().Add(s.cfg.RefreshTTL),
	}); err != nil {
		return protocol.Tokens{}, err
	}
	access, exp, err := s.accessToken(account, device.ID, device.Kind, sid)
	if err != nil {
		return protocol.Tokens{}, err
	}
	return protocol.Tokens{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp.UTC(), AccountID: account, DeviceID: device.ID}, nil
}

// DeviceScopes returns the scopes of an access token issued to a device of
// kind: read and write, and rpc.serve for machines.
func DeviceScopes(kind string) []string {
	if kind == "machine" {
		return []string{auth.ScopeRead, auth.ScopeWrite, auth.ScopeRPCServe}
	}
	return []string{auth.ScopeRead, auth.ScopeWrite}
}

func (s *Service) accessToken(account, device, kind, sid string) (string, time.Time, error) {
	return s.deps.Tokens.Issue(auth.Claims{
		UserID: account, DeviceID: device, Kind: kind, SessionID: sid, Scopes: DeviceScopes(kind),
	}, s.cfg.AccessTTL)
}

func (s *Service) refresh(ctx context.Context, _ *auth.Principal, req *protocol.RefreshRequest) (any, error) {
	if req.RefreshToken == "" {
		return nil, protocol.FieldError("refreshToken", "required")
	}
	if len(req.RefreshToken) > 256 {
		return nil, protocol.FieldError("refreshToken", "over 256 bytes")
	}
	next := refreshPrefix + randomToken(32)
	t, err := s.deps.Store.RotateRefresh(ctx, store.HashToken(req.RefreshToken), store.HashToken(next), time.Now().Add(s.cfg.RefreshTTL))
	switch {
	case errors.Is(err, store.ErrRefreshReuse):
		// The thief's and the owner's access tokens of this login are
		// refused from now on (auth.Revocations); close what they hold open.
		n := s.closeLogin(ctx, t.AccountID, t.SessionID)
		s.log.Warn("refresh token reused: login revoked", "user", t.AccountID, "device", t.DeviceID, "closed", n, "err", err)
		return nil, authFailure(auth.ReasonRevoked, protocol.Errorf(protocol.CodeUnauthorized, "refresh token already used: this login has been revoked, sign in again"))
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrInvalid):
		return nil, authFailure("refresh", protocol.Errorf(protocol.CodeUnauthorized, "invalid refresh token"))
	case err != nil:
		return nil, err
	}
	device, err := s.deps.Store.Device(ctx, t.AccountID, t.DeviceID)
	if err != nil {
		return nil, err
	}
	if device.Revoked() {
		return nil, protocol.Errorf(protocol.CodeUnauthorized, "invalid refresh token")
	}
	access, exp, err := s.accessToken(t.AccountID, t.DeviceID, device.Kind, t.SessionID)
	if err != nil {
		return nil, err
	}
	return protocol.Tokens{AccessToken: access, RefreshToken: next, ExpiresAt: exp.UTC(), AccountID: t.AccountID, DeviceID: t.DeviceID}, nil
}

// logout revokes the caller's login session: its refresh tokens, and its
// access tokens (refused from now on by auth.Revocations); the login's live
// connections are closed with 4003 (logout is a REST operation, so the
// caller is not one of them).
func (s *Service) logout(ctx context.Context, pr *auth.Principal, _ *protocol.Empty) (any, error) {
	if pr.SessionID == "" {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "this credential has no login session")
	}
	if err := s.deps.Store.RevokeFamily(ctx, pr.SessionID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	s.closeLogin(ctx, pr.UserID, pr.SessionID)
	return protocol.LoggedOut{LoggedOut: true}, nil
}

// closeLogin closes with 4003 the connections of user's login session sid
// once its revocation has committed: this node's at once (it returns how
// many), every other node's as soon as the hub's disconnect event reaches
// it. A connection that upgrades meanwhile is refused by the web layer's
// second revocation check after registering; one the event misses is
// refused at its next authentication (upgrade, REST, in-band auth.refresh)
// once the store's answer reaches that node's cache.
func (s *Service) closeLogin(ctx context.Context, user, sid string) int {
	if user == "" || sid == "" {
		return 0
	}
	n, err := s.deps.Hub.DisconnectEverywhere(context.WithoutCancel(ctx), hub.DisconnectMatch{UserID: user, SessionID: sid}, protocol.DisconnectForbidden)
	if err != nil {
		s.log.Warn("login revoked: other nodes not told", "user", user, "err", err)
	}
	return n
}

func (s *Service) me(ctx context.Context, pr *auth.Principal, _ *protocol.Empty) (any, error) {
	acct, err := s.deps.Store.Account(ctx, pr.UserID)
	if err != nil {
		return nil, err
	}
	seq, err := s.deps.Store.UpdateSeq(ctx, pr.UserID)
	if err != nil {
		return nil, err
	}
	res := protocol.Me{AccountID: acct.ID, PublicKey: acct.PublicKey, DeviceID: pr.DeviceID, Kind: pr.Kind,
		SessionID: pr.SessionID, Scopes: append([]string{}, pr.Scopes...), UpdateSeq: seq}
	if pr.DeviceID != "" {
		if d, err := s.deps.Store.Device(ctx, pr.UserID, pr.DeviceID); err == nil {
			wd := wireDevice(d)
			res.Device = &wd
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return res, nil
}

// requiredB64 decodes a required base64 field of a request.
func requiredB64(field, v string) ([]byte, error) {
	if v == "" {
		return nil, protocol.FieldError(field, "required")
	}
	return decodeB64(field, v)
}

// checkedDevice returns the optional "device" member of a login or pairing
// request (empty when absent), checked.
func checkedDevice(d *protocol.DeviceInfo) (protocol.DeviceInfo, error) {
	var dev protocol.DeviceInfo
	if d != nil {
		dev = *d
	}
	return dev, checkDeviceInfo(&dev, "device")
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}
