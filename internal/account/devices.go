package account

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
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Pairing codes: pairingCodeLen characters of Crockford's base32 alphabet
// (50 bits), shown as two groups of five. Only their SHA-256 is stored; they
// are single-use and expire after Config.PairingTTL.
const (
	pairingAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	pairingCodeLen  = 10
)

func checkDeviceParams(p *protocol.DeviceParams) error {
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

func (s *Service) deviceOps() []Op {
	return []Op{
		// Not idempotent on purpose: a replay would have to store the code
		// in clear; a retry simply draws another code.
		define(s, Op{Name: "device.pairing", Scope: auth.ScopeWrite, NoApps: true,
			Routes: []Route{{Method: "POST", Path: "/api/v1/devices/pairing", Status: http.StatusCreated, OperationID: "createPairingCode",
				Summary: "Create a short-lived pairing code for a new device", Tag: "Devices", Result: "PairingCode"}},
		}, protocol.PairingCode{}, nil, s.createPairing),
		define(s, Op{Name: "device.pair",
			Routes: []Route{{Method: "POST", Path: "/api/v1/devices/pair", Status: http.StatusOK, OperationID: "pair",
				Summary: "Join the account of a pairing code as a new device", Tag: "Devices", Body: "PairRequest", Result: "Tokens"}},
		}, protocol.Tokens{}, nil, s.pair),
		define(s, Op{Name: "device.list", Scope: auth.ScopeRead,
			Routes: []Route{{Method: "GET", Path: "/api/v1/devices", Status: http.StatusOK, OperationID: "listDevices",
				Summary: "The account's devices, revoked ones included", Tag: "Devices", Result: "DeviceList"}},
		}, protocol.DeviceList{}, nil, func(ctx context.Context, pr *auth.Principal, _ *protocol.Empty) (any, error) {
			ds, err := s.deps.Store.Devices(ctx, pr.UserID)
			return protocol.DeviceList{Items: nonNilSlice(wireAll(ds, wireDevice))}, err
		}),
		define(s, Op{Name: "device.get", Scope: auth.ScopeRead,
			Routes: []Route{{Method: "GET", Path: "/api/v1/devices/{id}", Status: http.StatusOK, OperationID: "getDevice",
				Summary: "One device", Tag: "Devices", Result: "Device", PathParams: idPath}},
		}, protocol.Device{}, checkDeviceParams, func(ctx context.Context, pr *auth.Principal, p *protocol.DeviceParams) (any, error) {
			d, err := s.deps.Store.Device(ctx, pr.UserID, p.ID)
			return wireDevice(d), err
		}),
		define(s, Op{Name: "device.update", Scope: auth.ScopeWrite, Mutating: true, NoApps: true,
			Routes: []Route{{Method: "PATCH", Path: "/api/v1/devices/{id}", Status: http.StatusOK, OperationID: "updateDevice",
				Summary: "Rename a device or set its push token", Tag: "Devices", Body: "DeviceUpdate", Result: "Device", PathParams: idPath}},
		}, protocol.Device{}, checkDeviceParams, s.updateDevice),
		define(s, Op{Name: "device.revoke", Scope: auth.ScopeWrite, Mutating: true, NoApps: true,
			Routes: []Route{{Method: "DELETE", Path: "/api/v1/devices/{id}", Status: http.StatusOK, OperationID: "revokeDevice",
				Summary: "Revoke a device: its refresh tokens are revoked, its connection closed with 4003", Tag: "Devices", Result: "Device", PathParams: idPath}},
		}, protocol.Device{}, checkDeviceParams, s.revokeDevice),
	}
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

func (s *Service) createPairing(ctx context.Context, pr *auth.Principal, _ *struct{}) (any, error) {
	if pr.DeviceID == "" {
		return nil, protocol.Errorf(protocol.CodeForbidden, "only a signed-in device can create a pairing code")
	}
	exp := time.Now().Add(s.cfg.PairingTTL)
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
		return protocol.PairingCode{
			Code:      code[:5] + "-" + code[5:],
			URI:       "junction://pair?" + q.Encode(),
			ExpiresAt: exp.UTC().Truncate(time.Microsecond),
		}, nil
	}
	return nil, errors.New("pairing code: no free code after 5 draws")
}

// pair joins the account of a pairing code as a new device.
func (s *Service) pair(ctx context.Context, _ *auth.Principal, req *protocol.PairRequest) (any, error) {
	code := normalizePairingCode(req.Code)
	if code == "" {
		return nil, protocol.FieldError("code", "required")
	}
	if len(code) != pairingCodeLen || strings.Trim(code, pairingAlphabet) != "" {
		return nil, protocol.FieldError("code", "want %d characters of the pairing alphabet", pairingCodeLen)
	}
	dev, err := checkedDevice(req.Device)
	if err != nil {
		return nil, err
	}
	if dev.ID != "" {
		return nil, protocol.FieldError("device.id", "not accepted when pairing: the device is new")
	}
	var pub ed25519.PublicKey
	if dev.PublicKey != "" {
		if pub, err = decodeKey("device.publicKey", dev.PublicKey); err != nil {
			return nil, err
		}
		if req.Signature == "" {
			return nil, protocol.FieldError("signature", "required with device.publicKey")
		}
		sig, err := decodeB64("signature", req.Signature)
		if err != nil {
			return nil, err
		}
		if !auth.VerifySignature(pub, []byte(protocol.PairingSignPrefix+code), sig) {
			return nil, authFailure(auth.ReasonSignature, protocol.Errorf(protocol.CodeUnauthorized, "pairing failed: signature does not verify"))
		}
	} else if req.Signature != "" {
		return nil, protocol.FieldError("signature", "only with device.publicKey")
	}
	pc, err := s.deps.Store.ConsumePairingCode(ctx, store.HashToken(code))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExpired) {
		return nil, authFailure("pairing", protocol.Errorf(protocol.CodeUnauthorized, "pairing failed: unknown, used or expired code"))
	}
	if err != nil {
		return nil, err
	}
	device, ups, err := s.deps.Store.CreateDevice(ctx, pc.AccountID, store.NewDevice{Kind: dev.Kind, Name: dev.Name, PublicKey: pub})
	if err != nil {
		return nil, err
	}
	s.publishUpdates(ctx, pc.AccountID, ups)
	res, err := s.issueTokens(ctx, pc.AccountID, device)
	if err != nil {
		return nil, err
	}
	s.log.Info("device paired", "user", pc.AccountID, "device", device.ID, "by", pc.CreatedByDevice)
	return res, nil
}

func (s *Service) updateDevice(ctx context.Context, pr *auth.Principal, p *protocol.DeviceParams) (any, error) {
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
	return wireDevice(d), nil
}

// closeDevice closes a revoked device's connection with 4003, on whichever
// node of a cluster holds it.
func (s *Service) closeDevice(ctx context.Context, user, device string) {
	if _, err := s.deps.Hub.DisconnectEverywhere(context.WithoutCancel(ctx), hub.DisconnectMatch{DeviceID: device}, protocol.DisconnectForbidden); err != nil {
		s.log.Warn("device revoked: other nodes not told", "user", user, "device", device, "err", err)
	}
}

// revokeDevice revokes a device and its refresh tokens (one transaction),
// then closes its live connection with 4003, on every node. Its access tokens are refused
// from then on (auth.Revocations).
func (s *Service) revokeDevice(ctx context.Context, pr *auth.Principal, p *protocol.DeviceParams) (any, error) {
	d, ups, err := s.deps.Store.RevokeDevice(ctx, pr.UserID, p.ID)
	if err != nil {
		return nil, err
	}
	s.closeDevice(ctx, pr.UserID, d.ID)
	s.publishUpdates(ctx, pr.UserID, ups)
	s.log.Info("device revoked", "user", pr.UserID, "device", d.ID, "by", pr.DeviceID)
	return wireDevice(d), nil
}
