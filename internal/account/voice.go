package account

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Voice: LiveKit-compatible access tokens for a media server the operator
// runs beside Junction. voice.token grants a named room; voice.session
// grants the room bound to one of the caller's sessions (only its owner
// gets one) and announces it as a session.voice update on user:{userId}.

// VoiceConfig configures voice tokens. Voice is off unless URL, APIKey and
// APISecret are all set; the zero value of each TTL selects its default.
type VoiceConfig struct {
	URL        string        `yaml:"url" doc:"voice: the LiveKit-compatible media server's URL clients connect to (wss://voice.example.com); with api_key and api_secret, turns on POST /api/v1/voice/token and /voice/session (default off: 404 not_configured)"`
	APIKey     string        `yaml:"api_key" doc:"voice: the media server's API key (the tokens' iss)"`
	APISecret  string        `yaml:"api_secret" doc:"voice: the media server's API secret that signs the tokens (HS256), at least 32 bytes; prefer JUNCTION_VOICE_API_SECRET to a file others can read"`
	DefaultTTL time.Duration `yaml:"default_ttl" doc:"voice: lifetime of a token when the request gives no ttl (default 1h)"`
	MaxTTL     time.Duration `yaml:"max_ttl" doc:"voice: longest lifetime a request may ask for (default 6h)"`
}

// Voice defaults and limits.
const (
	DefaultVoiceTTL    = time.Hour
	DefaultVoiceMaxTTL = 6 * time.Hour
	maxRoomName        = 128
)

// Configured reports whether voice tokens can be minted.
func (c VoiceConfig) Configured() bool { return c.URL != "" && c.APIKey != "" && c.APISecret != "" }

// Validate checks c: all of url, api_key and api_secret or none, a secret
// long enough, an http(s) or ws(s) URL, sane TTLs.
func (c VoiceConfig) Validate() error {
	set := 0
	for _, v := range []string{c.URL, c.APIKey, c.APISecret} {
		if v != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("voice: url, api_key and api_secret go together: set all three or none")
	}
	if c.DefaultTTL < 0 || c.MaxTTL < 0 {
		return errors.New("voice: default_ttl and max_ttl must not be negative")
	}
	c.setDefaults()
	if c.DefaultTTL > c.MaxTTL {
		return fmt.Errorf("voice: default_ttl %v is over max_ttl %v", c.DefaultTTL, c.MaxTTL)
	}
	if set == 0 {
		return nil
	}
	if len(c.APISecret) < auth.MinVoiceSecretBytes {
		return fmt.Errorf("voice: api_secret is shorter than %d bytes", auth.MinVoiceSecretBytes)
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || (u.Scheme != "wss" && u.Scheme != "ws" && u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("voice: url %q: want wss://host (or ws, https, http)", c.URL)
	}
	return nil
}

func (c *VoiceConfig) setDefaults() {
	if c.DefaultTTL == 0 {
		c.DefaultTTL = DefaultVoiceTTL
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = DefaultVoiceMaxTTL
	}
}

func (s *Service) voiceOps() []Op {
	return []Op{
		define(s, Op{Name: "voice.token", Scope: auth.ScopeWrite, WS: true,
			Routes: []Route{{Method: "POST", Path: "/api/v1/voice/token", Status: http.StatusOK, OperationID: "voiceToken",
				Summary: "A LiveKit access token for a room (404 not_configured without voice settings)", Tag: "Voice",
				Body: "VoiceTokenRequest", Result: "VoiceToken"}},
		}, protocol.VoiceToken{}, s.checkVoiceToken, s.voiceToken),
		define(s, Op{Name: "voice.session", Scope: auth.ScopeWrite, WS: true,
			Routes: []Route{{Method: "POST", Path: "/api/v1/voice/session", Status: http.StatusOK, OperationID: "voiceSession",
				Summary: "A LiveKit access token for the room of one of the caller's sessions, announced as session.voice", Tag: "Voice",
				Body: "VoiceSessionRequest", Result: "VoiceToken"}},
		}, protocol.VoiceToken{}, s.checkVoiceSession, s.voiceSession),
	}
}

func errVoiceNotConfigured() error {
	return protocol.Errorf(protocol.CodeNotFound, "voice is not configured on this server (voice.url, voice.api_key, voice.api_secret)").
		WithDetail("reason", "not_configured")
}

func (s *Service) checkVoiceTTL(ttl int64) error {
	if limit := int64(s.cfg.Voice.MaxTTL / time.Second); ttl < 0 || ttl > limit {
		return protocol.FieldError("ttl", "want 1..%d seconds (absent for the default)", limit)
	}
	return nil
}

func (s *Service) checkVoiceToken(p *protocol.VoiceTokenParams) error {
	if !s.cfg.Voice.Configured() {
		return errVoiceNotConfigured()
	}
	switch {
	case p.Room == "":
		return protocol.FieldError("room", "required")
	case len(p.Room) > maxRoomName:
		return protocol.FieldError("room", "over %d bytes", maxRoomName)
	case strings.HasPrefix(p.Room, protocol.VoiceSessionRoomPrefix):
		return protocol.FieldError("room", "names starting with %q are the rooms of sessions: use voice.session (POST /api/v1/voice/session)", protocol.VoiceSessionRoomPrefix)
	case strings.ContainsFunc(p.Room, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return protocol.FieldError("room", "control characters are not allowed")
	}
	return s.checkVoiceTTL(p.TTL)
}

func (s *Service) checkVoiceSession(p *protocol.VoiceSessionParams) error {
	if !s.cfg.Voice.Configured() {
		return errVoiceNotConfigured()
	}
	if err := checkID("sessionId", p.SessionID); err != nil {
		return err
	}
	return s.checkVoiceTTL(p.TTL)
}

func (s *Service) voiceToken(ctx context.Context, pr *auth.Principal, p *protocol.VoiceTokenParams) (any, error) {
	return s.mintVoice(ctx, pr, p.Room, p.CanPublish, p.CanSubscribe, p.TTL)
}

// voiceSession mints the token of the session's room, then announces the
// room on the account's channel; the announcement's transaction checks
// that the session is the caller's, so nothing leaves before that check.
func (s *Service) voiceSession(ctx context.Context, pr *auth.Principal, p *protocol.VoiceSessionParams) (any, error) {
	room := protocol.VoiceSessionRoomPrefix + p.SessionID
	tok, err := s.mintVoice(ctx, pr, room, p.CanPublish, p.CanSubscribe, p.TTL)
	if err != nil {
		return nil, err
	}
	ups, err := s.deps.Store.AnnounceSessionVoice(ctx, pr.UserID, p.SessionID, room, s.cfg.Voice.URL)
	if err != nil {
		return nil, err
	}
	s.publishUpdates(ctx, pr.UserID, ups)
	return tok, nil
}

// mintVoice signs the token: identity "userId:deviceId", named after the
// device when the account knows it.
func (s *Service) mintVoice(ctx context.Context, pr *auth.Principal, room string, canPublish, canSubscribe *bool, ttlSec int64) (protocol.VoiceToken, error) {
	if pr.UserID == "" {
		return protocol.VoiceToken{}, protocol.Errorf(protocol.CodeForbidden, "voice needs a credential that names a user")
	}
	identity := pr.UserID
	name := pr.UserID
	if pr.DeviceID != "" {
		identity += ":" + pr.DeviceID
		name = identity
		if d, err := s.deps.Store.Device(ctx, pr.UserID, pr.DeviceID); err == nil && d.Name != "" {
			name = d.Name
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return protocol.VoiceToken{}, err
		}
	}
	ttl := s.cfg.Voice.DefaultTTL
	if ttlSec > 0 {
		ttl = time.Duration(ttlSec) * time.Second
	}
	grant := auth.VoiceGrant{RoomJoin: true, Room: room, CanPublish: orTrue(canPublish), CanSubscribe: orTrue(canSubscribe)}
	grant.CanPublishData = grant.CanPublish
	now := s.now()
	tok, err := auth.VoiceToken(s.cfg.Voice.APIKey, []byte(s.cfg.Voice.APISecret), identity, name, grant, now, ttl)
	if err != nil {
		return protocol.VoiceToken{}, err
	}
	return protocol.VoiceToken{Token: tok, URL: s.cfg.Voice.URL, ExpiresAt: now.Truncate(time.Second).Add(ttl).UTC(),
		Room: room, Identity: identity}, nil
}

func orTrue(b *bool) bool { return b == nil || *b }
