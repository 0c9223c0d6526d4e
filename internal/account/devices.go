package web

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Pairing codes: pairingCodeLen characters of Crockford's base32 alphabet
// (50 bits), shown as two groups of five. Only their SHA-256 is stored; they
// are single-use and expire after LoginConfig.PairingTTL.
const (
	pairingAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	pairingCodeLen  = 10
	// PairingSignPrefix is prepended to the normalized code to form the
	// message a pairing device signs with its own key.
	PairingSignPrefix = "junction-pair:"
)

// PairingCodeResult answers POST /api/v1/devices/pairing.
type PairingCodeResult struct {
	// Code is shown to the user, "ABCDE-FGHJK"; dashes, spaces and case
	// are ignored when it is entered.
	Code string `json:"code"`
	// URI is the same code as a QR-friendly link:
	// junction://pair?code=ABCDEFGHJK&server=https%3A%2F%2Fhost.
	URI       string    `json:"uri"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// PairRequest is the body of POST /api/v1/devices/pair.
type PairRequest struct {
	Code   string      `json:"code"`
	Device *DeviceInfo `json:"device,omitempty"`
	// Signature is the new device's ed25519 signature of
	// PairingSignPrefix+normalized code, required with device.publicKey.
	Signature string `json:"signature,omitempty"`
}

// DeviceList answers GET /api/v1/devices.
type DeviceList struct {
	Items []store.Device `json:"items"`
}

type deviceParams struct {
	ID string `json:"id"`
	// Name and PushToken change the device (PATCH); nil leaves them.
	Name      *string `json:"name,omitempty"`
	PushToken *string `json:"pushToken,omitempty"`
}

func (p *deviceParams) check() error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if p.Name != nil && len(*p.Name) > 256 {
		return protocol.FieldError("name", "over 256 bytes")
	}
	if p.PushToken != nil && len(*p.PushToken) > 4096 {
		return protocol.FieldError("pushToken", "over 4096 bytes")
	}
	return nil
}

func (s *Server) deviceRoutes() {
	registerREST(s, "POST /api/v1/devices/pairing", http.StatusCreated, op[struct{}]{
		// Not idempotent on purpose: a replay would have to store the
		// code in clear; a retry simply draws another code.
		name: "device.pairing", scope: auth.ScopeWrite, run: s.createPairing,
	}, nil)
	s.handle("POST /api/v1/devices/pair", s.servePair)
	registerREST(s, "GET /api/v1/devices", http.StatusOK, op[struct{}]{
		name: "device.list", scope: auth.ScopeRead,
		run: func(ctx context.Context, pr *auth.Principal, _ *struct{}) (any, error) {
			ds, err := s.deps.Store.Devices(ctx, pr.UserID)
			return DeviceList{Items: nonNilSlice(ds)}, err
		},
	}, nil)
	pathID := func(r *http.Request, p *deviceParams) error { p.ID = r.PathValue("id"); return nil }
	registerREST(s, "GET /api/v1/devices/{id}", http.StatusOK, op[deviceParams]{
		name: "device.get", scope: auth.ScopeRead,
		run: func(ctx context.Context, pr *auth.Principal, p *deviceParams) (any, error) {
			return s.deps.Store.Device(ctx, pr.UserID, p.ID)
		},
	}, pathID)
	registerREST(s, "PATCH /api/v1/devices/{id}", http.StatusOK, op[deviceParams]{
		name: "device.update", scope: auth.ScopeWrite, mutating: true, run: s.updateDevice,
	}, func(r *http.Request, p *deviceParams) error {
		if err := DecodeJSON(r, p); err != nil {
			return err
		}
		p.ID = r.PathValue("id")
		return nil
	})
	registerREST(s, "DELETE /api/v1/devices/{id}", http.StatusOK, op[deviceParams]{
		name: "device.revoke", scope: auth.ScopeWrite, mutating: true, run: s.revokeDevice,
	}, pathID)
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// newPairingCode returns a random code in its normalized form.
func newPairingCode() string {
	b := make([]byte, pairingCodeLen)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = pairingAlphabet[int(b[i])%len(pairingAlphabet)] // 256 % 32 == 0: unbiased
	}
	return string(b)
}

// normalizePairingCode uppercases a code, drops separators and maps the
// letters Crockford's alphabet leaves out to the digits they look like.
func normalizePairingCode(c string) string {
	var sb strings.Builder
	for _, r := range strings.ToUpper(c) {
		switch r {
		case '-', ' ':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		sb.WriteRune(r)
	}
	return sb.String()
}

func (s *Server) createPairing(ctx context.Context, pr *auth.Principal, _ *struct{}) (any, error) {
	if pr.DeviceID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a signed-in device can create a pairing code")
	}
	exp := time.Now().Add(s.deps.Login.PairingTTL)
	for range 5 {
		code := newPairingCode()
		_, err := s.deps.Store.CreatePairingCode(ctx, store.HashToken(code), pr.UserID, pr.DeviceID, exp)
		if errors.Is(err, store.ErrDuplicate) {
			continue
		}
		if err != nil {
			return nil, err
		}
		server := ""
		if base, ok := ctx.Value(baseURLKey{}).(string); ok {
			server = base
		}
		q := url.Values{"code": {code}}
		if server != "" {
			q.Set("server", server)
		}
		return PairingCodeResult{
			Code:      code[:5] + "-" + code[5:],
			URI:       "junction://pair?" + q.Encode(),
			ExpiresAt: exp.UTC().Truncate(time.Microsecond),
		}, nil
	}
	return nil, errors.New("pairing code: no free code after 5 draws")
}

// baseURLKey carries the request's base URL (scheme://host) in the context
// of a REST operation, for links such as the pairing URI.
type baseURLKey struct{}

func (s *Server) servePair(w http.ResponseWriter, r *http.Request) {
	var req PairRequest
	if err := DecodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	code := normalizePairingCode(req.Code)
	if code == "" {
		writeError(w, protocol.FieldError("code", "required"))
		return
	}
	if len(code) != pairingCodeLen || strings.Trim(code, pairingAlphabet) != "" {
		writeError(w, protocol.FieldError("code", "want %d characters of the pairing alphabet", pairingCodeLen))
		return
	}
	dev, err := checkedDevice(req.Device)
	if err != nil {
		writeError(w, err)
		return
	}
	if dev.ID != "" {
		writeError(w, protocol.FieldError("device.id", "not accepted when pairing: the device is new"))
		return
	}
	var pub ed25519.PublicKey
	if dev.PublicKey != "" {
		if pub, err = decodeKey("device.publicKey", dev.PublicKey); err != nil {
			writeError(w, err)
			return
		}
		if req.Signature == "" {
			writeError(w, protocol.FieldError("signature", "required with device.publicKey"))
			return
		}
		sig, err := decodeB64("signature", req.Signature)
		if err != nil {
			writeError(w, err)
			return
		}
		if !auth.VerifySignature(pub, []byte(PairingSignPrefix+code), sig) {
			s.metrics.authFailures.WithLabelValues(auth.ReasonSignature).Inc()
			writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "pairing failed: signature does not verify"))
			return
		}
	} else if req.Signature != "" {
		writeError(w, protocol.FieldError("signature", "only with device.publicKey"))
		return
	}
	ctx := r.Context()
	pc, err := s.deps.Store.ConsumePairingCode(ctx, store.HashToken(code))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		s.metrics.authFailures.WithLabelValues("pairing").Inc()
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, "pairing failed: unknown, used or expired code"))
		return
	}
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	device, ups, err := s.deps.Store.CreateDevice(ctx, pc.AccountID, store.NewDevice{Kind: dev.Kind, Name: dev.Name, PublicKey: pub})
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	s.publishUpdates(ctx, pc.AccountID, ups)
	res, err := s.issueTokens(ctx, pc.AccountID, device)
	if err != nil {
		s.writeOpError(w, r, err)
		return
	}
	s.log.Info("device paired", "user", pc.AccountID, "device", device.ID, "by", pc.CreatedByDevice)
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) updateDevice(ctx context.Context, pr *auth.Principal, p *deviceParams) (any, error) {
	if p.Name == nil && p.PushToken == nil {
		return nil, protocol.FieldError("name", "name or pushToken required")
	}
	var d store.Device
	var err error
	var ups, more []store.Update
	if p.Name != nil {
		if d, ups, err = s.deps.Store.RenameDevice(ctx, pr.UserID, p.ID, *p.Name); err != nil {
			return nil, err
		}
	}
	if p.PushToken != nil {
		if d, more, err = s.deps.Store.SetDevicePushToken(ctx, pr.UserID, p.ID, *p.PushToken); err != nil {
			s.publishUpdates(ctx, pr.UserID, ups)
			return nil, err
		}
	}
	s.publishUpdates(ctx, pr.UserID, append(ups, more...))
	return d, nil
}

// revokeDevice revokes a device and its refresh tokens (one transaction),
// then closes its live connection with 4003. Its access tokens are refused
// from then on (checkDevice).
func (s *Server) revokeDevice(ctx context.Context, pr *auth.Principal, p *deviceParams) (any, error) {
	d, ups, err := s.deps.Store.RevokeDevice(ctx, pr.UserID, p.ID)
	if err != nil {
		return nil, err
	}
	s.deps.Hub.CloseDevice(d.ID, protocol.CloseForbidden)
	s.publishUpdates(ctx, pr.UserID, ups)
	s.log.Info("device revoked", "user", pr.UserID, "device", d.ID, "by", pr.DeviceID)
	return d, nil
}
