package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// revocationMap is a Revocations over a map of "user/device" keys and one of
// "user/sid" keys for logins.
type revocationMap struct {
	revoked map[string]bool
	logins  map[string]bool
	err     error
}

func (r *revocationMap) DeviceRevoked(_ context.Context, user, device string) (bool, error) {
	return r.revoked[user+"/"+device], r.err
}

func (r *revocationMap) LoginRevoked(_ context.Context, user, sid string) (bool, error) {
	return r.logins[user+"/"+sid], r.err
}

func TestAuthenticateRefusesRevokedDevices(t *testing.T) {
	tok, err := NewTokens(TokenConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(user, device string) string {
		t.Helper()
		s, _, err := tok.Issue(Claims{UserID: user, DeviceID: device, Kind: "phone", Scopes: []string{ScopeRead}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	revs := &revocationMap{revoked: map[string]bool{"alice/d1": true}}
	a := &Authenticator{Tokens: tok, Revocations: revs}
	ctx := context.Background()

	for _, tc := range []struct {
		name, user, device string
		wantReason         string // "" for success
	}{
		{"revoked device", "alice", "d1", ReasonRevoked},
		{"other device of the account", "alice", "d2", ""},
		{"same device id, other user", "bob", "d1", ""},
		{"no device", "alice", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(ctx, issue(tc.user, tc.device))
			if tc.wantReason == "" {
				if err != nil || p.UserID != tc.user {
					t.Fatalf("got %v, %v; want user %s", p, err, tc.user)
				}
				return
			}
			if got := FailureReason(err); got != tc.wantReason {
				t.Fatalf("reason: got %q (%v), want %q", got, err, tc.wantReason)
			}
		})
	}

	// A fault of the revocation store is not an authentication failure.
	fault := errors.New("database down")
	revs.err = fault
	if _, err := a.Authenticate(ctx, issue("alice", "d2")); !errors.Is(err, fault) || errors.As(err, new(*Failure)) {
		t.Fatalf("store fault: got %v, want the fault and no *Failure", err)
	}

	// Without Revocations nothing is checked.
	plain := &Authenticator{Tokens: tok}
	if _, err := plain.Authenticate(ctx, issue("alice", "d1")); err != nil {
		t.Fatalf("without Revocations: %v", err)
	}
}

func TestAuthenticateRefusesRevokedLogins(t *testing.T) {
	tok, err := NewTokens(TokenConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(user, device, sid string) string {
		t.Helper()
		s, _, err := tok.Issue(Claims{UserID: user, DeviceID: device, SessionID: sid, Kind: "phone", Scopes: []string{ScopeRead}}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	revs := &revocationMap{logins: map[string]bool{"alice/s1": true}}
	a := &Authenticator{Tokens: tok, Revocations: revs}
	ctx := context.Background()

	for _, tc := range []struct {
		name, user, device, sid string
		wantReason              string // "" for success
	}{
		{"revoked login", "alice", "d1", "s1", ReasonRevoked},
		{"revoked login, no device", "alice", "", "s1", ReasonRevoked},
		{"other login of the device", "alice", "d1", "s2", ""},
		{"same sid, other user", "bob", "d1", "s1", ""},
		{"no login session", "alice", "d1", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := a.Authenticate(ctx, issue(tc.user, tc.device, tc.sid))
			if tc.wantReason == "" {
				if err != nil || p.UserID != tc.user {
					t.Fatalf("got %v, %v; want user %s", p, err, tc.user)
				}
				return
			}
			if got := FailureReason(err); got != tc.wantReason {
				t.Fatalf("reason: got %q (%v), want %q", got, err, tc.wantReason)
			}
		})
	}

	fault := errors.New("database down")
	revs.err = fault
	if _, err := a.Authenticate(ctx, issue("alice", "", "s2")); !errors.Is(err, fault) || errors.As(err, new(*Failure)) {
		t.Fatalf("store fault: got %v, want the fault and no *Failure", err)
	}
}
