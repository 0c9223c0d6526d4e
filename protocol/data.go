package protocol

import (
	"encoding/json"
	"time"
)

// Payloads of the encrypted data API (docs/api.md): sessions, machines and
// artifacts (objects with two encrypted, independently versioned fields),
// session messages and the account's update log. Each is a REST body and
// the params or result of the WebSocket method of the same operation.
// Ciphertext is standard base64 on the wire.

// Versioned is an encrypted field and its version: 1 when the object is
// created, +1 with each accepted update of that field.
type Versioned struct {
	Value   []byte `json:"value" doc:"ciphertext (base64); null when empty"`
	Version int64  `json:"version" doc:"starts at 1, +1 per accepted update"`
}

// Session is an encrypted conversation with an agent.
type Session struct {
	ID         string    `json:"id"`
	AccountID  string    `json:"accountId"`
	Metadata   Versioned `json:"metadata"`
	AgentState Versioned `json:"agentState"`
	// LastSeq is the seq of the session's last message (0 if none).
	LastSeq   int64     `json:"lastSeq" doc:"seq of the last message"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Machine is an agent daemon's record.
type Machine struct {
	ID          string    `json:"id"`
	AccountID   string    `json:"accountId"`
	Metadata    Versioned `json:"metadata"`
	DaemonState Versioned `json:"daemonState"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
}

// Artifact is an encrypted document with a small Header and a large Body.
type Artifact struct {
	ID        string    `json:"id"`
	AccountID string    `json:"accountId"`
	Header    Versioned `json:"header"`
	Body      Versioned `json:"body"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// ObjectList is a page of sessions, machines or artifacts, newest first.
type ObjectList[T any] struct {
	Items []T `json:"items" schema:"nonnull"`
	// NextCursor fetches the following page; empty after the last.
	NextCursor string `json:"nextCursor" doc:"empty after the last page"`
}

// Deleted answers a delete.
type Deleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// IDParams names one object (session.get, session.delete, ...).
type IDParams struct {
	ID string `json:"id"`
}

// ListParams selects a page of objects (session.list, ...).
type ListParams struct {
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty" schema:"min=1" doc:"1..100; absent for the default (50)"`
}

// FieldUpdate replaces one encrypted field if its version is
// ExpectedVersion (session.update, ...).
type FieldUpdate struct {
	ID string `json:"id"`
	// Field names the encrypted field: "metadata", "agentState",
	// "daemonState", "header" or "body" as the object has them.
	Field           string `json:"field"`
	Value           string `json:"value" doc:"the new ciphertext (base64)"` // base64
	ExpectedVersion *int64 `json:"expectedVersion" doc:"the version the client last saw"`
}

// SessionCreate is the params of session.create (base64 ciphertext).
type SessionCreate struct {
	Metadata   string `json:"metadata,omitempty"`
	AgentState string `json:"agentState,omitempty"`
}

// MachineCreate is the params of machine.create (base64 ciphertext).
type MachineCreate struct {
	Metadata    string `json:"metadata,omitempty"`
	DaemonState string `json:"daemonState,omitempty"`
}

// ArtifactCreate is the params of artifact.create (base64 ciphertext).
type ArtifactCreate struct {
	Header string `json:"header,omitempty"`
	Body   string `json:"body,omitempty"`
}

// Message is a stored message of a session.
type Message struct {
	ID        string `json:"id"`
	SessionID string `json:"sessionId"`
	// Seq is the message's position in its session: 1, 2, 3, ... with no
	// gaps.
	Seq       int64     `json:"seq" doc:"1, 2, 3... per session"`
	LocalID   string    `json:"localId,omitempty" doc:"the client's id, for dedupe"`
	Body      []byte    `json:"body"`
	CreatedAt time.Time `json:"createdAt"`
}

// MessageIn is one message to append.
type MessageIn struct {
	// LocalID is the client's id for the message, unique per session: a
	// repeat returns the stored message instead of adding one. Optional.
	LocalID string `json:"localId,omitempty"`
	Body    string `json:"body"` // base64 ciphertext
}

// MessageAppend is the params of message.append: 1..100 messages.
type MessageAppend struct {
	SessionID string      `json:"sessionId"`
	Messages  []MessageIn `json:"messages"`
}

// MessageListParams is the params of message.list.
type MessageListParams struct {
	SessionID string `json:"sessionId"`
	AfterSeq  int64  `json:"afterSeq,omitempty"`
	BeforeSeq int64  `json:"beforeSeq,omitempty"`
	Limit     int    `json:"limit,omitempty" schema:"min=1" doc:"1..100; absent for the default (50)"`
}

// MessageList is a page of messages.
type MessageList struct {
	Items []Message `json:"items"`
}

// Update is one entry of an account's update log.
type Update struct {
	// Seq is the per-account sequence number: 1, 2, 3, ... with no gaps.
	Seq int64 `json:"seq" doc:"per account, gap-free"`
	// Kind is "<object>.<change>": session.created, message.created,
	// device.revoked, ... (docs/api.md lists them with their bodies).
	Kind string `json:"kind" doc:"session.created, message.created, device.revoked, ..."`
	// ID is the object that changed (for messages, the message id).
	ID      string `json:"id"`
	Version int64  `json:"version"`
	// Body is a JSON document describing the change.
	Body      json.RawMessage `json:"body" doc:"JSON describing the change"`
	CreatedAt time.Time       `json:"createdAt"`
}

// UpdatesSince is the params of update.since.
type UpdatesSince struct {
	Since int64 `json:"since"`
	Limit int   `json:"limit,omitempty" schema:"min=1" doc:"1..1000; absent for the default (100)"`
}

// Updates answers update.since: a page of the log, or a reset.
type Updates struct {
	// Updates are the updates after since, in seq order; empty with Reset.
	Updates []Update `json:"updates" schema:"nonnull"`
	// Reset is true when the log no longer holds every update after since
	// (retention) or since is ahead of the account: the client must fetch
	// fresh state, then continue from Seq.
	Reset bool `json:"reset" doc:"the log no longer holds everything after since: fetch fresh state, continue from seq"`
	// Seq is the account's last update seq when Reset is true.
	Seq int64 `json:"seq,omitempty" doc:"with reset: the account's last seq"`
	// HasMore is true when the page is full: ask again from the last seq.
	HasMore bool `json:"hasMore" doc:"the page is full: ask again from the last seq"`
}

// UpdatePublication is the data of the channel.message that carries one
// update live on the account's channel user:{userId}.
type UpdatePublication struct {
	Update Update `json:"update"`
}
