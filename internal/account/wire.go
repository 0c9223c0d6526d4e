package account

import (
	"encoding/json"
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

// wireUpdate maps an update log entry, its body included.
func wireUpdate(u store.Update) protocol.Update {
	return protocol.Update{Seq: u.Seq, Kind: u.Kind, ID: u.ID, Version: u.Version, Body: wireUpdateBody(u.Kind, u.Body), CreatedAt: u.CreatedAt}
}

// wireUpdateBody maps the body the store wrote when the change committed
// (store.Kind... documents each kind's body, in the store's own encoding)
// to its wire form: the object's protocol type for creations, messages and
// devices; {"id", "<field>": Versioned} for field updates; {"id"} for
// deletions. A body it cannot read, or of a kind it does not know, is
// passed on as stored.
func wireUpdateBody(kind string, body json.RawMessage) json.RawMessage {
	out, err := remapBody(kind, body)
	if err != nil || out == nil {
		return body
	}
	return out
}

func remapBody(kind string, body json.RawMessage) (json.RawMessage, error) {
	switch kind {
	case store.KindSessionCreated:
		return remap(body, wireSession)
	case store.KindMachineCreated:
		return remap(body, wireMachine)
	case store.KindArtifactCreated:
		return remap(body, wireArtifact)
	case store.KindMessageCreated:
		return remap(body, wireMessage)
	case store.KindDeviceCreated, store.KindDeviceUpdated, store.KindDeviceRevoked:
		return remap(body, wireDevice)
	case store.KindSessionUpdated, store.KindMachineUpdated, store.KindArtifactUpdated:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		out := make(map[string]any, len(m))
		for k, raw := range m {
			if k == "id" {
				var id string
				if err := json.Unmarshal(raw, &id); err != nil {
					return nil, err
				}
				out[k] = id
				continue
			}
			var v store.Versioned
			if err := json.Unmarshal(raw, &v); err != nil {
				return nil, err
			}
			out[k] = wireVersioned(v)
		}
		return json.Marshal(out)
	case store.KindSessionDeleted, store.KindMachineDeleted, store.KindArtifactDeleted:
		var d struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, err
		}
		return json.Marshal(map[string]string{"id": d.ID})
	}
	return nil, nil
}

// remap decodes a store record from its stored JSON and encodes its wire
// type.
func remap[S, W any](body json.RawMessage, f func(S) W) (json.RawMessage, error) {
	var v S
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, err
	}
	return json.Marshal(f(v))
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
