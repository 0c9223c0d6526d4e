package account

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
)

// Channel namespaces name account resources in their topics
// (device:{deviceId}, session:{sessionId}): the "owner" rule asks who owns
// them, and the "session" snapshot provider sends the session as stored.

// Owner lookup and snapshot provider names, as a namespace's owner and
// snapshot settings name them.
const (
	OwnerDevice     = "device"
	OwnerSession    = "session"
	OwnerMachine    = "machine"
	OwnerArtifact   = "artifact"
	SnapshotSession = "session"
)

// resourceID is the id a topic names: the parameter param when the pattern
// binds it, else the pattern's only parameter ("" when there is none or
// several).
func resourceID(t hub.Topic, param string) string {
	if v := t.Param(param); v != "" {
		return v
	}
	ps := t.Params()
	if len(ps) != 1 {
		return ""
	}
	for _, v := range ps {
		return v
	}
	return ""
}

// ownerLookup adapts a store owner query to hub.OwnerLookup, reading the
// resource id from the topic's parameter param (or its only parameter).
func ownerLookup(param string, owner func(ctx context.Context, id string) (string, error)) hub.OwnerLookup {
	return hub.OwnerFunc(func(ctx context.Context, t hub.Topic) (string, error) {
		id := resourceID(t, param)
		if id == "" {
			return "", nil
		}
		return owner(ctx, id)
	})
}

// registerOwners registers the store-backed owner lookups and the session
// snapshot provider with h.
func (s *Service) registerOwners(h *hub.Hub) {
	db := s.deps.Store
	h.RegisterOwnerLookup(OwnerDevice, ownerLookup("deviceId", db.DeviceOwner))
	h.RegisterOwnerLookup(OwnerSession, ownerLookup("sessionId", db.SessionOwner))
	h.RegisterOwnerLookup(OwnerMachine, ownerLookup("machineId", db.MachineOwner))
	h.RegisterOwnerLookup(OwnerArtifact, ownerLookup("artifactId", db.ArtifactOwner))
	h.RegisterSnapshot(SnapshotSession, hub.SnapshotFunc(s.sessionSnapshot))
}

// sessionSnapshot is the session a topic names (parameter sessionId, or
// the pattern's only parameter) as stored, in its wire form
// (protocol.Session), or null when there is no such session. It returns no
// position: the hub brackets it with position reads (hub.SnapshotProvider).
// The server itself publishes session changes on user:{userId}, not on the
// session's topic, so what the topic streams is up to its publishers; a
// publisher that changes the session and publishes must do so in that
// order for the snapshot to be consistent.
func (s *Service) sessionSnapshot(ctx context.Context, t hub.Topic) (hub.Snapshot, error) {
	id := resourceID(t, "sessionId")
	if id == "" {
		return hub.Snapshot{Data: json.RawMessage("null")}, nil
	}
	account, err := s.deps.Store.SessionOwner(ctx, id)
	if err != nil || account == "" {
		return hub.Snapshot{Data: json.RawMessage("null")}, err
	}
	sess, err := s.deps.Store.Session(ctx, account, id)
	if errors.Is(err, store.ErrNotFound) {
		return hub.Snapshot{Data: json.RawMessage("null")}, nil // deleted meanwhile
	}
	if err != nil {
		return hub.Snapshot{}, err
	}
	data, err := json.Marshal(wireSession(sess))
	if err != nil {
		return hub.Snapshot{}, err
	}
	return hub.Snapshot{Data: data}, nil
}
