package web

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

// LoginConfig configures key login, refresh and pairing. The zero value of
// every field selects its default.
type LoginConfig struct {
	// AccessTTL is the lifetime of access tokens issued at login, refresh
	// and pairing; default 1 h.
	AccessTTL time.Duration
	// RefreshTTL is the lifetime of refresh tokens; default 30 days.
	RefreshTTL time.Duration
	// ChallengeTTL is how long a login nonce is valid; default 5 min.
	ChallengeTTL time.Duration
	// PairingTTL is how long a pairing code is valid; default 5 min.
	PairingTTL time.Duration
}

func (c *LoginConfig) setDefaults() {
	if c.AccessTTL <= 0 {
		c.AccessTTL = time.Hour
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.ChallengeTTL <= 0 {
		c.ChallengeTTL = auth.DefaultChallengeTTL
	}
	if c.PairingTTL <= 0 {
		c.PairingTTL = 5 * time.Minute
	}
}

// refreshPrefix starts every refresh token, so that a leaked one is easy to
// recognise (secret scanners) and never mistaken for an access token.
const refreshPrefix = "jrt_"

// ChallengeRequest is the body of POST /api/v1/auth/challenge.
type ChallengeRequest struct {
	PublicKey string `json:"publicKey"`
}

// ChallengeResult answers POST /api/v1/auth/challenge.
type ChallengeResult struct {
	Nonce     string    `json:"nonce"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// DeviceInfo describes the device that logs in or pairs.
type DeviceInfo struct {
	// ID resumes an existing, unrevoked device of the account (login only).
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
	Kind string `json:"kind,omitempty"`
	// PublicKey is the device's own ed25519 key (pairing only, optional).
	PublicKey string `json:"publicKey,omitempty"`
}

func (d *DeviceInfo) check(field string) error {
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

// LoginRequest is the body of POST /api/v1/auth/login.
type LoginRequest struct {
	PublicKey string      `json:"publicKey"`
	Nonce     string      `json:"nonce"`
	Signature string      `json:"signature"`
	Device    *DeviceInfo `json:"device,omitempty"`
}

// TokenResult answers login, refresh and pairing.
type TokenResult struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
	AccountID    string    `json:"accountId"`
	DeviceID     string    `json:"deviceId"`
	// Created is true when this login created the account.
	Created bool `json:"created,omitempty"`
}

// RefreshRequest is the body of POST /api/v1/auth/refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refreshToken"`
}

// MeResult answers GET /api/v1/auth/me.
type MeResult struct {
	AccountID string        `json:"accountId"`
	PublicKey []byte        `json:"publicKey"`
	DeviceID  string        `json:"deviceId"`
	Kind      string        `json:"kind"`
	SessionID string        `json:"sessionId,omitempty"`
	Scopes    []string      `json:"scopes"`
	UpdateSeq int64         `json:"updateSeq"`
	Device    *store.Device `json:"device,omitempty"`
}

func (s *Server) authRoutes() {
	s.handle("POST /api/v1/auth/challenge", s.serveChallenge)
	s.handle("POST /api/v1/auth/login", s.serveLogin)
	s.handle("POST /api/v1/auth/refresh", s.serveRefresh)
	registerREST(s, "POST /api/v1/auth/logout", http.StatusOK, op[struct{}]{
		name: "auth.logout", scope: hub.ScopeAuthenticated, mutating: true, run: s.logout,
	}, nil)
	registerREST(s, "GET /api/v1/auth/me", http.StatusOK, op[struct{}]{
		name: "auth.me", scope: hub.ScopeAuthenticated, run: s.me,
	}, nil)
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

func (s *Server) serveChallenge(w http.ResponseWriter, r *http.Request) {
	var req ChallengeRequest
	if err := DecodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	pub, err := decodeKey("publicKey", req.PublicKey)
	if err != nil {
		writeError(w, err)
		return
	}
	nonce, exp, err := s.challenges.Issue(pub)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ChallengeResult{Nonce: base64.StdEncoding.EncodeToString(nonce), ExpiresAt: exp.UTC()})
}

func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if err := DecodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	pub, err := decodeKey("publicKey", req.PublicKey)
	if err != nil {
		writeError(w, err)
		return
	}
	nonce, err := requiredB64("nonce", req.Nonce)
	if err != nil {
		writeError(w, err)
		return
	}
	sig, err := requiredB64("signature", req.Signature)
	if err != nil {
		writeError(w, err)
		return
	}
	dev, err := checkedDevice(req.Device)
	if err != nil {
		writeError(w, err)
		return
	}
	if dev.PublicKey != "" {
		writeError(w, protocol.FieldError("device.publicKey", "not accepted at login: the login key is the device's key"))
		return
	}
	// The nonce is consumed only by a valid signature (a forged attempt
	// cannot burn it), and only once: a replayed nonce or signature fails.
	if err := s.challenges.Verify(pub, nonce, sig); err != nil {
		s.metrics.authFailures.WithLabelValues(auth.FailureReason(err)).Inc()
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "login failed: %s", auth.FailureReason(err)))
		return
	}
	ctx := r.Context()
	acct, created, err := s.deps.Store.AccountForKey(ctx, pub)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	var device store.Device
	if dev.ID != "" {
		device, err = s.deps.Store.Device(ctx, acct.ID, dev.ID)
		if err != nil {
			s.writeOpError(w, r, err)
			return
		}
		if device.Revoked() {
			writeError(w, protocol.Errorf(protocol.CodeForbidden, "device %s is revoked", dev.ID))
			return
		}
	} else {
		var ups []store.Update
		device, ups, err = s.deps.Store.CreateDevice(ctx, acct.ID, store.NewDevice{Kind: dev.Kind, Name: dev.Name, PublicKey: pub})
		if err != nil {
			s.writeOpError(w, r, err)
			return
		}
		s.publishUpdates(ctx, acct.ID, ups)
	}
	res, err := s.issueTokens(ctx, acct.ID, device)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	res.Created = created
	s.log.Info("login", "user", acct.ID, "device", device.ID, "created", created)
	writeJSON(w, http.StatusOK, res)
}

// issueTokens starts a login session for device: a new refresh token family
// whose id is the session id ("sid"), and an access token.
func (s *Server) issueTokens(ctx context.Context, account string, device store.Device) (TokenResult, error) {
	sid := randomToken(16)
	refresh := refreshPrefix + randomToken(32)
	if _, err := s.deps.Store.CreateRefresh(ctx, store.NewRefresh{
		Hash: store.HashToken(refresh), FamilyID: sid, AccountID: account, DeviceID: device.ID, SessionID: sid,
		ExpiresAt: time.Now().Add(s.deps.Login.RefreshTTL),
	}); err != nil {
		return TokenResult{}, err
	}
	access, exp, err := s.accessToken(account, device.ID, device.Kind, sid)
	if err != nil {
		return TokenResult{}, err
	}
	return TokenResult{AccessToken: access, RefreshToken: refresh, ExpiresAt: exp.UTC(), AccountID: account, DeviceID: device.ID}, nil
}

// DeviceScopes returns the scopes of an access token issued to a device of
// kind: read and write, and rpc.serve for machines.
func DeviceScopes(kind string) []string {
	if kind == "machine" {
		return []string{auth.ScopeRead, auth.ScopeWrite, auth.ScopeRPCServe}
	}
	return []string{auth.ScopeRead, auth.ScopeWrite}
}

func (s *Server) accessToken(account, device, kind, sid string) (string, time.Time, error) {
	return s.deps.Authenticator.Tokens.Issue(auth.Claims{
		UserID: account, DeviceID: device, Kind: kind, SessionID: sid, Scopes: DeviceScopes(kind),
	}, s.deps.Login.AccessTTL)
}

func (s *Server) serveRefresh(w http.ResponseWriter, r *http.Request) {
	var req RefreshRequest
	if err := DecodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.RefreshToken == "" {
		writeError(w, protocol.FieldError("refreshToken", "required"))
		return
	}
	if len(req.RefreshToken) > 256 {
		writeError(w, protocol.FieldError("refreshToken", "over 256 bytes"))
		return
	}
	ctx := r.Context()
	next := refreshPrefix + randomToken(32)
	t, err := s.deps.Store.RotateRefresh(ctx, store.HashToken(req.RefreshToken), store.HashToken(next), time.Now().Add(s.deps.Login.RefreshTTL))
	switch {
	case errors.Is(err, store.ErrRefreshReuse):
		s.metrics.authFailures.WithLabelValues(auth.ReasonRevoked).Inc()
		s.log.Warn("refresh token reused: login revoked", "err", err)
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "refresh token already used: this login has been revoked, sign in again"))
		return
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrRevoked), errors.Is(err, store.ErrExpired), errors.Is(err, store.ErrInvalid):
		s.metrics.authFailures.WithLabelValues("refresh").Inc()
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "invalid refresh token"))
		return
	case err != nil:
		s.writeOpError(w, r, err)
		return
	}
	device, err := s.deps.Store.Device(ctx, t.AccountID, t.DeviceID)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	if device.Revoked() {
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "invalid refresh token"))
		return
	}
	access, exp, err := s.accessToken(t.AccountID, t.DeviceID, device.Kind, t.SessionID)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, TokenResult{AccessToken: access, RefreshToken: next, ExpiresAt: exp.UTC(), AccountID: t.AccountID, DeviceID: t.DeviceID})
}

// logout revokes the refresh tokens of the caller's login session. Access
// tokens already issued stay valid until they expire (they are short-lived).
func (s *Server) logout(ctx context.Context, pr *auth.Principal, _ *struct{}) (any, error) {
	if pr.SessionID == "" {
		return nil, protocol.Errorf(protocol.CodeBadRequest, "this credential has no login session")
	}
	if err := s.deps.Store.RevokeFamily(ctx, pr.SessionID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return map[string]bool{"loggedOut": true}, nil
}

func (s *Server) me(ctx context.Context, pr *auth.Principal, _ *struct{}) (any, error) {
	acct, err := s.deps.Store.Account(ctx, pr.UserID)
	if err != nil {
		return nil, err
	}
	seq, err := s.deps.Store.UpdateSeq(ctx, pr.UserID)
	if err != nil {
		return nil, err
	}
	res := MeResult{AccountID: acct.ID, PublicKey: acct.PublicKey, DeviceID: pr.DeviceID, Kind: pr.Kind,
		SessionID: pr.SessionID, Scopes: append([]string{}, pr.Scopes...), UpdateSeq: seq}
	if pr.DeviceID != "" {
		if d, err := s.deps.Store.Device(ctx, pr.UserID, pr.DeviceID); err == nil {
			res.Device = &d
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return res, nil
}

// checkDevice refuses a principal whose device the store knows as revoked.
// Tokens for devices the store does not know (minted with "junction token")
// pass: they are bound to no account device. It runs on every connect and
// request, so it asks the store's cached DeviceStatus: a revocation through
// this server is seen at once, one made by another node sharing the database
// within store.Options.DeviceCacheTTL.
func (s *Server) checkDevice(ctx context.Context, p *auth.Principal) error {
	if s.deps.Store == nil || p.AppID != "" || p.DeviceID == "" {
		return nil
	}
	st, err := s.deps.Store.DeviceStatus(ctx, p.UserID, p.DeviceID)
	switch {
	case err != nil:
		s.log.Error("device check failed", "err", err)
		return protocol.Errorf(protocol.CodeUnavailable, "storage unavailable")
	case st == store.DeviceRevoked:
		s.metrics.authFailures.WithLabelValues(auth.ReasonRevoked).Inc()
		return protocol.Errorf(protocol.CodeUnauthorized, "invalid credential: %s", auth.ReasonRevoked)
	}
	return nil
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
func checkedDevice(d *DeviceInfo) (DeviceInfo, error) {
	var dev DeviceInfo
	if d != nil {
		dev = *d
	}
	return dev, dev.check("device")
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// accountRoutes registers the account API (with Deps.Store): REST routes
// and the WebSocket methods, before the hub starts.
func (s *Server) accountRoutes() {
	s.authRoutes()
	s.deviceRoutes()
	s.dataRoutes()
	s.updateRoutes()
	s.handle("GET /api/v1/openapi.json", s.serveOpenAPI)
	// Clients learn from the welcome that the data methods are here.
	s.deps.Hub.AddFeature("data")
}
