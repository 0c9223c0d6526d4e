package protocol

import "time"

// Voice: LiveKit-compatible access tokens for a media server the operator
// runs beside Junction (docs/api.md, "Voice").

// VoiceTokenParams is the params of voice.token (POST /api/v1/voice/token).
type VoiceTokenParams struct {
	// Room is the room to join; names starting with VoiceSessionRoomPrefix
	// are reserved for voice.session.
	Room string `json:"room" doc:"room name, 1..128 bytes; names starting with session- are reserved for voice.session"`
	// CanPublish and CanSubscribe default to true.
	CanPublish   *bool `json:"canPublish,omitempty" doc:"may publish audio, video and data (default true)"`
	CanSubscribe *bool `json:"canSubscribe,omitempty" doc:"may receive the others' tracks (default true)"`
	// TTL is the token's lifetime in seconds; absent for the server's
	// default, at most its maximum (voice.max_ttl).
	TTL int64 `json:"ttl,omitempty" schema:"min=1" doc:"lifetime in seconds (default voice.default_ttl, at most voice.max_ttl)"`
}

// VoiceSessionParams is the params of voice.session
// (POST /api/v1/voice/session).
type VoiceSessionParams struct {
	// SessionID is one of the caller's sessions.
	SessionID    string `json:"sessionId"`
	CanPublish   *bool  `json:"canPublish,omitempty" doc:"may publish (default true)"`
	CanSubscribe *bool  `json:"canSubscribe,omitempty" doc:"may receive the others' tracks (default true)"`
	TTL          int64  `json:"ttl,omitempty" schema:"min=1" doc:"lifetime in seconds (default voice.default_ttl, at most voice.max_ttl)"`
}

// VoiceSessionRoomPrefix starts the name of the room bound to a session:
// "session-" + the session id. voice.token refuses such names, so that only
// the session's owner (through voice.session) gets a token for it.
const VoiceSessionRoomPrefix = "session-"

// VoiceToken answers voice.token and voice.session.
type VoiceToken struct {
	// Token is the LiveKit access token (a JWT, HS256).
	Token string `json:"token" doc:"LiveKit access token (JWT, HS256)"`
	// URL is the media server's URL the client connects to with Token.
	URL string `json:"url" doc:"the media server's URL (voice.url)"`
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time `json:"expiresAt"`
	// Room and Identity are what the token grants: the room, and the
	// participant identity "userId:deviceId" (the user id alone for a
	// credential without a device).
	Room     string `json:"room"`
	Identity string `json:"identity" doc:"userId:deviceId"`
}

// VoiceSessionBody is the body of the session.voice update on
// user:{userId}: a voice room was opened for one of the account's sessions.
type VoiceSessionBody struct {
	ID   string `json:"id" doc:"the session id"`
	Room string `json:"room"`
	URL  string `json:"url"`
}
