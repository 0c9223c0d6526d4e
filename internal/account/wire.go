package account

import (
	"strconv"

	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// Store records never reach clients as they are: each is mapped here to its
// wire type in protocol, so that a store change cannot change the API.

func wireVersioned(v store.Versioned) protocol.Versioned {
	return protocol.Versioned{Value: v.Value, Version: v.Version}
}

func wireSession(s store.Session) protocol.Session {
	return protocol.Session{ID: s.ID, AccountID: s.AccountID, Metadata: wireVersioned(s.Metadata),
		AgentState: wireVersioned(s.AgentState), LastSeq: s.LastSeq, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

func wireMachine(m store.Machine) protocol.Machine {
	return protocol.Machine{ID: m.ID, AccountID: m.AccountID, Metadata: wireVersioned(m.Metadata),
		DaemonState: wireVersioned(m.DaemonState), CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt}
}

func wireArtifact(a store.Artifact) protocol.Artifact {
	return protocol.Artifact{ID: a.ID, AccountID: a.AccountID, Header: wireVersioned(a.Header),
		Body: wireVersioned(a.Body), CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
}

func wireMessage(m store.Message) protocol.Message {
	return protocol.Message{ID: m.ID, SessionID: m.SessionID, Seq: m.Seq, LocalID: m.LocalID, Body: m.Body, CreatedAt: m.CreatedAt}
}

// wireDevice maps a device; its push token never leaves the server.
func wireDevice(d store.Device) protocol.Device {
	return protocol.Device{ID: d.ID, AccountID: d.AccountID, Kind: d.Kind, Name: d.Name, PublicKey: d.PublicKey,
		Version: d.Version, CreatedAt: d.CreatedAt, LastSeenAt: d.LastSeenAt, RevokedAt: d.RevokedAt}
}

// wireUpdate maps an update log entry. Its body is JSON the store wrote
// when the change committed (store.Kind... documents each kind's body).
func wireUpdate(u store.Update) protocol.Update {
	return protocol.Update{Seq: u.Seq, Kind: u.Kind, ID: u.ID, Version: u.Version, Body: u.Body, CreatedAt: u.CreatedAt}
}

// wireAll maps a slice, keeping nil as nil.
func wireAll[S, W any](in []S, f func(S) W) []W {
	if in == nil {
		return nil
	}
	out := make([]W, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }
