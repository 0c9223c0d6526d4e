package protocol

import "time"

// Payloads of the account API (docs/api.md): key login, refresh and
// logout, devices and pairing. They are the REST bodies and, for the
// methods that also exist on the WebSocket, the params and results of those
// methods. Binary values are standard base64 on the wire: []byte fields
// encode so; string fields documented as base64 carry it as sent, so that
// the server can name a field that does not decode.

// ChallengeRequest is the body of POST /api/v1/auth/challenge.
type ChallengeRequest struct {
	// PublicKey is the account's ed25519 public key (32 bytes, base64).
	PublicKey string `json:"publicKey" doc:"the account's ed25519 public key (32 bytes, base64)"`
}

// Challenge answers POST /api/v1/auth/challenge: a single-use nonce to sign.
type Challenge struct {
	Nonce     string    `json:"nonce" doc:"32 random bytes to sign (base64)"` // base64
	ExpiresAt time.Time `json:"expiresAt"`
}

// DeviceInfo describes the device that logs in or pairs.
type DeviceInfo struct {
	// ID resumes an existing, unrevoked device of the account (login only).
	ID   string `json:"id,omitempty" doc:"login only: resume this unrevoked device of the account"`
	Name string `json:"name,omitempty" doc:"label (default: the kind)"`
	Kind string `json:"kind,omitempty" schema:"enum=phone|tablet|tv|glasses|browser|machine|iot"`
	// PublicKey is the device's own ed25519 key, base64 (pairing only,
	// optional).
	PublicKey string `json:"publicKey,omitempty" doc:"pairing only: the device's own ed25519 key (base64)"`
}

// LoginRequest is the body of POST /api/v1/auth/login.
type LoginRequest struct {
	PublicKey string      `json:"publicKey"`                                                                                    // base64
	Nonce     string      `json:"nonce"`                                                                                        // base64, from the challenge
	Signature string      `json:"signature" doc:"ed25519 detached signature of the nonce's bytes (base64, nacl.sign.detached)"` // base64 ed25519 signature of the nonce's bytes
	Device    *DeviceInfo `json:"device,omitempty"`
}

// Tokens answers login, refresh and pairing.
type Tokens struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresAt    time.Time `json:"expiresAt"`
	AccountID    string    `json:"accountId"`
	DeviceID     string    `json:"deviceId"`
	// Created is true when this login created the account.
	Created bool `json:"created,omitempty" doc:"this login created the account"`
}

// RefreshRequest is the body of POST /api/v1/auth/refresh.
type RefreshRequest struct {
	RefreshToken string `json:"refreshToken"`
}

// LoggedOut answers POST /api/v1/auth/logout.
type LoggedOut struct {
	LoggedOut bool `json:"loggedOut"`
}

// Me answers GET /api/v1/auth/me.
type Me struct {
	AccountID string   `json:"accountId"`
	PublicKey []byte   `json:"publicKey"`
	DeviceID  string   `json:"deviceId"`
	Kind      string   `json:"kind" schema:"enum=phone|tablet|tv|glasses|browser|machine|iot"`
	SessionID string   `json:"sessionId,omitempty" doc:"login session"`
	Scopes    []string `json:"scopes" schema:"nonnull"`
	UpdateSeq int64    `json:"updateSeq" doc:"the account's last update seq"`
	Device    *Device  `json:"device,omitempty"`
}

// Device is one of an account's devices.
type Device struct {
	ID        string `json:"id"`
	AccountID string `json:"accountId"`
	// Kind is phone, tablet, tv, glasses, browser, machine or iot.
	Kind      string `json:"kind" schema:"enum=phone|tablet|tv|glasses|browser|machine|iot"`
	Name      string `json:"name"`
	PublicKey []byte `json:"publicKey,omitempty"`
	// Version starts at 1 and grows with each rename, push token change or
	// revocation.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"createdAt"`
	// LastSeenAt is when its last connection closed; absent if never.
	LastSeenAt time.Time `json:"lastSeenAt,omitzero" doc:"when its last connection closed"`
	// RevokedAt is when it was revoked; absent if it is not.
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// DeviceList answers GET /api/v1/devices.
type DeviceList struct {
	Items []Device `json:"items" schema:"nonnull"`
}

// DeviceParams names a device (GET and DELETE /api/v1/devices/{id}) and,
// for PATCH, what changes: a nil Name or PushToken is left as it is.
type DeviceParams struct {
	ID        string  `json:"id"`
	Name      *string `json:"name,omitempty"`
	PushToken *string `json:"pushToken,omitempty"`
}

// PairingCode answers POST /api/v1/devices/pairing.
type PairingCode struct {
	// Code is shown to the user, "ABCDE-FGHJK"; dashes, spaces and case
	// are ignored when it is entered.
	Code string `json:"code" doc:"ABCDE-FGHJK; case, spaces and dashes are ignored when entered"`
	// URI is the same code as a QR-friendly link:
	// junction://pair?code=ABCDEFGHJK&server=https%3A%2F%2Fhost.
	URI       string    `json:"uri"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// PairRequest is the body of POST /api/v1/devices/pair.
type PairRequest struct {
	Code   string      `json:"code"`
	Device *DeviceInfo `json:"device,omitempty"`
	// Signature is the new device's ed25519 signature (base64) of
	// PairingSignPrefix + the normalized code, required with
	// device.publicKey.
	Signature string `json:"signature,omitempty"`
}

// PairingSignPrefix is prepended to the normalized pairing code (upper
// case, no dashes) to form the message a pairing device signs with its own
// key.
const PairingSignPrefix = "junction-pair:"

// Empty is the params of operations and methods that take none, and the
// result of those that return an empty object.
type Empty struct{}
