package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/junctionhq/junction/protocol"
)

// Typed helpers for the account API (docs/api.md): key login over REST, and
// the encrypted data methods over the WebSocket. Encrypted values are
// []byte (base64 on the wire); seal them with Seal before they leave the
// device.

// Tokens is the answer of Login, Refresh and pairing.
type Tokens = protocol.Tokens

// LoginDevice names the device that logs in. ID resumes an existing device
// of the account; empty registers a new one.
type LoginDevice = protocol.DeviceInfo

// Login signs in to the server at baseURL ("https://host") with the
// account key: it asks for a challenge, signs the nonce and logs in. The
// first login of a key creates the account. hc may be nil
// (http.DefaultClient).
func Login(ctx context.Context, hc *http.Client, baseURL string, key ed25519.PrivateKey, dev LoginDevice) (Tokens, error) {
	pub := key.Public().(ed25519.PublicKey)
	var ch struct {
		Nonce []byte `json:"nonce"`
	}
	if err := postJSON(ctx, hc, baseURL+"/api/v1/auth/challenge", protocol.ChallengeRequest{PublicKey: b64(pub)}, &ch); err != nil {
		return Tokens{}, fmt.Errorf("client: login: challenge: %w", err)
	}
	var t Tokens
	err := postJSON(ctx, hc, baseURL+"/api/v1/auth/login", protocol.LoginRequest{
		PublicKey: b64(pub), Nonce: b64(ch.Nonce), Signature: b64(ed25519.Sign(key, ch.Nonce)), Device: &dev,
	}, &t)
	if err != nil {
		return Tokens{}, fmt.Errorf("client: login: %w", err)
	}
	return t, nil
}

// Refresh exchanges a refresh token for a new pair. Store the new refresh
// token at once: the old one is now used, and presenting it again revokes
// the whole login.
func Refresh(ctx context.Context, hc *http.Client, baseURL, refreshToken string) (Tokens, error) {
	var t Tokens
	if err := postJSON(ctx, hc, baseURL+"/api/v1/auth/refresh", protocol.RefreshRequest{RefreshToken: refreshToken}, &t); err != nil {
		return Tokens{}, fmt.Errorf("client: refresh: %w", err)
	}
	return t, nil
}

// postJSON posts v and decodes the answer into out; an error answer is
// returned as its *protocol.Error.
func postJSON(ctx context.Context, hc *http.Client, url string, v, out any) error {
	if hc == nil {
		hc = http.DefaultClient
	}
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error *protocol.Error `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != nil {
			return e.Error
		}
		return fmt.Errorf("http %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return json.Unmarshal(raw, out)
}

// Versioned is an encrypted field and its version.
type Versioned = protocol.Versioned

// Session is an encrypted session.
type Session = protocol.Session

// Message is a stored message of a session.
type Message = protocol.Message

// NewMessage is one message to append.
type NewMessage struct {
	LocalID string `json:"localId,omitempty"`
	Body    []byte `json:"body"`
}

// Update is one entry of the account's update log.
type Update = protocol.Update

// Updates is a page of the update log, or a reset.
type Updates = protocol.Updates

// CreateSession creates a session with sealed metadata and agent state.
// idem, when not empty, makes the call safe to repeat.
func (c *Client) CreateSession(ctx context.Context, metadata, agentState []byte, idem string) (Session, error) {
	var s Session
	err := c.CallIdem(ctx, "session.create", protocol.SessionCreate{Metadata: b64(metadata), AgentState: b64(agentState)}, idem, &s)
	return s, err
}

// Session returns a session.
func (c *Client) Session(ctx context.Context, id string) (Session, error) {
	var s Session
	err := c.Call(ctx, "session.get", protocol.IDParams{ID: id}, &s)
	return s, err
}

// UpdateSession replaces field ("metadata" or "agentState") if its version
// is expected. On a version conflict the error is a *protocol.Error with
// code conflict whose Details hold "currentVersion" and "value" (base64).
func (c *Client) UpdateSession(ctx context.Context, id, field string, value []byte, expected int64, idem string) (Session, error) {
	var s Session
	err := c.CallIdem(ctx, "session.update", protocol.FieldUpdate{ID: id, Field: field, Value: b64(value), ExpectedVersion: &expected}, idem, &s)
	return s, err
}

// AppendMessages appends up to 100 messages to a session in one
// transaction; messages whose LocalID is already stored come back as stored.
func (c *Client) AppendMessages(ctx context.Context, sessionID string, msgs []NewMessage, idem string) ([]Message, error) {
	var res protocol.MessageList
	in := make([]protocol.MessageIn, len(msgs))
	for i, m := range msgs {
		in[i] = protocol.MessageIn{LocalID: m.LocalID, Body: b64(m.Body)}
	}
	err := c.CallIdem(ctx, "message.append", protocol.MessageAppend{SessionID: sessionID, Messages: in}, idem, &res)
	return res.Items, err
}

// Messages returns the messages of a session with seq > afterSeq, oldest
// first, at most limit (0: the server's default).
func (c *Client) Messages(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]Message, error) {
	var res protocol.MessageList
	err := c.Call(ctx, "message.list", protocol.MessageListParams{SessionID: sessionID, AfterSeq: afterSeq, Limit: limit}, &res)
	return res.Items, err
}

// UpdatesSince returns the account's updates after seq since.
func (c *Client) UpdatesSince(ctx context.Context, since int64, limit int) (Updates, error) {
	var u Updates
	err := c.Call(ctx, "update.since", protocol.UpdatesSince{Since: since, Limit: limit}, &u)
	return u, err
}

// b64 encodes binary values as the wire wants them: standard base64 ("" for
// nil).
func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
