package web

import (
	"context"
	"net/http"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// The encrypted data API: sessions, machines and artifacts (versioned
// objects with two encrypted fields each) and session messages. Encrypted
// values travel as standard base64 and are stored as opaque bytes.

// objectKind describes one versioned object type for the generic handlers.
type objectKind struct {
	name   string    // "session": method prefix
	plural string    // "sessions": path segment
	fields [2]string // JSON names of the encrypted fields
	paths  [2]string // path segments of their update routes
	get    func(ctx context.Context, account, id string) (any, error)
	list   func(ctx context.Context, account string, p store.Page) (any, string, error)
	update [2]func(ctx context.Context, account, id string, expected int64, v []byte) (any, []store.Update, error)
	del    func(ctx context.Context, account, id string) ([]store.Update, error)
}

// ObjectList is a page of sessions, machines or artifacts, newest first.
type ObjectList[T any] struct {
	Items []T `json:"items"`
	// NextCursor fetches the following page; empty after the last.
	NextCursor string `json:"nextCursor"`
}

// MessageList is a page of messages.
type MessageList struct {
	Items []store.Message `json:"items"`
}

// Deleted answers a delete.
type Deleted struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

type idParams struct {
	ID string `json:"id"`
}

func (p *idParams) check() error { return checkID("id", p.ID) }

type listParams struct {
	Cursor string `json:"cursor,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

func (p *listParams) check() error {
	if len(p.Cursor) > 256 {
		return protocol.FieldError("cursor", "over 256 bytes")
	}
	return checkLimit(p.Limit)
}

type updateParams struct {
	ID string `json:"id"`
	// Field names the encrypted field: "metadata", "agentState",
	// "daemonState", "header" or "body" as the object has them.
	Field           string `json:"field"`
	Value           string `json:"value"`
	ExpectedVersion *int64 `json:"expectedVersion"`
}

func (p *updateParams) check() error {
	if err := checkID("id", p.ID); err != nil {
		return err
	}
	if p.Field == "" {
		return protocol.FieldError("field", "required")
	}
	if p.ExpectedVersion == nil {
		return protocol.FieldError("expectedVersion", "required")
	}
	if *p.ExpectedVersion < 1 {
		return protocol.FieldError("expectedVersion", "want a version >= 1")
	}
	_, err := decodeB64("value", p.Value)
	return err
}

// Create params, one type per object kind so that decoding is strict.

type sessionCreate struct {
	Metadata   string `json:"metadata"`
	AgentState string `json:"agentState"`
}

func (p *sessionCreate) check() error {
	return checkB64s("metadata", p.Metadata, "agentState", p.AgentState)
}

type machineCreate struct {
	Metadata    string `json:"metadata"`
	DaemonState string `json:"daemonState"`
}

func (p *machineCreate) check() error {
	return checkB64s("metadata", p.Metadata, "daemonState", p.DaemonState)
}

type artifactCreate struct {
	Header string `json:"header"`
	Body   string `json:"body"`
}

func (p *artifactCreate) check() error { return checkB64s("header", p.Header, "body", p.Body) }

func checkB64s(fa, a, fb, b string) error {
	if _, err := decodeB64(fa, a); err != nil {
		return err
	}
	_, err := decodeB64(fb, b)
	return err
}

func mustB64(s string) []byte {
	b, _ := decodeB64("", s) // checked by check()
	return b
}

type messageIn struct {
	LocalID string `json:"localId,omitempty"`
	Body    string `json:"body"`
}

type appendParams struct {
	SessionID string      `json:"sessionId"`
	Messages  []messageIn `json:"messages"`
}

func (p *appendParams) check() error {
	if err := checkID("sessionId", p.SessionID); err != nil {
		return err
	}
	if len(p.Messages) == 0 {
		return protocol.FieldError("messages", "required: 1..%d messages", store.MaxBatch)
	}
	if len(p.Messages) > store.MaxBatch {
		return protocol.FieldError("messages", "%d messages, at most %d in one batch", len(p.Messages), store.MaxBatch)
	}
	for i, m := range p.Messages {
		if len(m.LocalID) > 256 {
			return protocol.FieldError("messages["+itoa(int64(i))+"].localId", "over 256 bytes")
		}
		if _, err := decodeB64("messages["+itoa(int64(i))+"].body", m.Body); err != nil {
			return err
		}
	}
	return nil
}

type messageListParams struct {
	SessionID string `json:"sessionId"`
	AfterSeq  int64  `json:"afterSeq,omitempty"`
	BeforeSeq int64  `json:"beforeSeq,omitempty"`
	Limit     int    `json:"limit,omitempty"`
}

func (p *messageListParams) check() error {
	if err := checkID("sessionId", p.SessionID); err != nil {
		return err
	}
	if p.AfterSeq < 0 {
		return protocol.FieldError("afterSeq", "must not be negative")
	}
	if p.BeforeSeq < 0 {
		return protocol.FieldError("beforeSeq", "must not be negative")
	}
	return checkLimit(p.Limit)
}

func (s *Server) dataRoutes() {
	db := s.deps.Store
	sessions := objectKind{
		name: "session", plural: "sessions",
		fields: [2]string{"metadata", "agentState"}, paths: [2]string{"metadata", "agent-state"},
		get: func(ctx context.Context, a, id string) (any, error) { return db.Session(ctx, a, id) },
		list: func(ctx context.Context, a string, p store.Page) (any, string, error) {
			items, next, err := db.Sessions(ctx, a, p)
			return ObjectList[store.Session]{Items: nonNilSlice(items), NextCursor: next}, next, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateSessionMetadata(ctx, a, id, e, v)
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateSessionAgentState(ctx, a, id, e, v)
			},
		},
		del: db.DeleteSession,
	}
	machines := objectKind{
		name: "machine", plural: "machines",
		fields: [2]string{"metadata", "daemonState"}, paths: [2]string{"metadata", "daemon-state"},
		get: func(ctx context.Context, a, id string) (any, error) { return db.Machine(ctx, a, id) },
		list: func(ctx context.Context, a string, p store.Page) (any, string, error) {
			items, next, err := db.Machines(ctx, a, p)
			return ObjectList[store.Machine]{Items: nonNilSlice(items), NextCursor: next}, next, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateMachineMetadata(ctx, a, id, e, v)
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateMachineDaemonState(ctx, a, id, e, v)
			},
		},
		del: db.DeleteMachine,
	}
	artifacts := objectKind{
		name: "artifact", plural: "artifacts",
		fields: [2]string{"header", "body"}, paths: [2]string{"header", "body"},
		get: func(ctx context.Context, a, id string) (any, error) { return db.Artifact(ctx, a, id) },
		list: func(ctx context.Context, a string, p store.Page) (any, string, error) {
			items, next, err := db.Artifacts(ctx, a, p)
			return ObjectList[store.Artifact]{Items: nonNilSlice(items), NextCursor: next}, next, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateArtifactHeader(ctx, a, id, e, v)
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				return db.UpdateArtifactBody(ctx, a, id, e, v)
			},
		},
		del: db.DeleteArtifact,
	}

	registerObject(s, sessions, func(ctx context.Context, a string, p *sessionCreate) (any, []store.Update, error) {
		return db.CreateSession(ctx, a, mustB64(p.Metadata), mustB64(p.AgentState))
	})
	registerObject(s, machines, func(ctx context.Context, a string, p *machineCreate) (any, []store.Update, error) {
		return db.CreateMachine(ctx, a, mustB64(p.Metadata), mustB64(p.DaemonState))
	})
	registerObject(s, artifacts, func(ctx context.Context, a string, p *artifactCreate) (any, []store.Update, error) {
		return db.CreateArtifact(ctx, a, mustB64(p.Header), mustB64(p.Body))
	})
	s.messageRoutes()
}

// registerObject registers list, create, get, update and delete of one
// object kind on both transports.
func registerObject[C any](s *Server, k objectKind, create func(ctx context.Context, account string, p *C) (any, []store.Update, error)) {
	base := "/api/v1/" + k.plural
	pathID := func(r *http.Request, p *idParams) error { p.ID = r.PathValue("id"); return nil }

	list := op[listParams]{name: k.name + ".list", scope: auth.ScopeRead,
		run: func(ctx context.Context, pr *auth.Principal, p *listParams) (any, error) {
			res, _, err := k.list(ctx, pr.UserID, store.Page{Cursor: p.Cursor, Limit: p.Limit})
			if err != nil {
				return nil, listErr(err)
			}
			return res, nil
		}}
	registerWS(s, list)
	registerREST(s, "GET "+base, http.StatusOK, list, func(r *http.Request, p *listParams) error {
		p.Cursor = r.URL.Query().Get("cursor")
		n, err := queryInt(r, "limit")
		p.Limit = int(min(n, 1<<20))
		return err
	})

	createOp := op[C]{name: k.name + ".create", scope: auth.ScopeWrite, mutating: true,
		run: func(ctx context.Context, pr *auth.Principal, p *C) (any, error) {
			obj, ups, err := create(ctx, pr.UserID, p)
			if err != nil {
				return nil, err
			}
			s.publishUpdates(ctx, pr.UserID, ups)
			return obj, nil
		}}
	registerWS(s, createOp)
	registerREST(s, "POST "+base, http.StatusCreated, createOp, func(r *http.Request, p *C) error {
		return decodeBody(r, p, true)
	})

	get := op[idParams]{name: k.name + ".get", scope: auth.ScopeRead,
		run: func(ctx context.Context, pr *auth.Principal, p *idParams) (any, error) {
			return k.get(ctx, pr.UserID, p.ID)
		}}
	registerWS(s, get)
	registerREST(s, "GET "+base+"/{id}", http.StatusOK, get, pathID)

	update := op[updateParams]{name: k.name + ".update", scope: auth.ScopeWrite, mutating: true,
		run: func(ctx context.Context, pr *auth.Principal, p *updateParams) (any, error) {
			i := -1
			for j, f := range k.fields {
				if p.Field == f {
					i = j
				}
			}
			if i < 0 {
				return nil, protocol.FieldError("field", "want %q or %q", k.fields[0], k.fields[1])
			}
			obj, ups, err := k.update[i](ctx, pr.UserID, p.ID, *p.ExpectedVersion, mustB64(p.Value))
			if err != nil {
				return nil, err
			}
			s.publishUpdates(ctx, pr.UserID, ups)
			return obj, nil
		}}
	registerWS(s, update)
	for i, seg := range k.paths {
		field := k.fields[i]
		registerREST(s, "PUT "+base+"/{id}/"+seg, http.StatusOK, update, func(r *http.Request, p *updateParams) error {
			if err := DecodeJSON(r, p); err != nil {
				return err
			}
			if p.Field != "" && p.Field != field {
				return protocol.FieldError("field", "must be %q on this route, or absent", field)
			}
			p.ID, p.Field = r.PathValue("id"), field
			return nil
		})
	}

	del := op[idParams]{name: k.name + ".delete", scope: auth.ScopeWrite, mutating: true,
		run: func(ctx context.Context, pr *auth.Principal, p *idParams) (any, error) {
			ups, err := k.del(ctx, pr.UserID, p.ID)
			if err != nil {
				return nil, err
			}
			s.publishUpdates(ctx, pr.UserID, ups)
			return Deleted{ID: p.ID, Deleted: true}, nil
		}}
	registerWS(s, del)
	registerREST(s, "DELETE "+base+"/{id}", http.StatusOK, del, pathID)
}

// listErr names the cursor when the store refuses it.
func listErr(err error) error {
	if mapped := protocol.AsError(mapStoreErr(err)); mapped.Code == protocol.CodeBadRequest {
		return protocol.FieldError("cursor", "invalid cursor")
	}
	return err
}

func (s *Server) messageRoutes() {
	db := s.deps.Store
	appendOp := op[appendParams]{name: "message.append", scope: auth.ScopeWrite, mutating: true,
		run: func(ctx context.Context, pr *auth.Principal, p *appendParams) (any, error) {
			in := make([]store.NewMessage, len(p.Messages))
			for i, m := range p.Messages {
				in[i] = store.NewMessage{LocalID: m.LocalID, Body: mustB64(m.Body)}
			}
			out, ups, err := db.AppendMessages(ctx, pr.UserID, p.SessionID, in)
			if err != nil {
				return nil, err
			}
			s.publishUpdates(ctx, pr.UserID, ups)
			return MessageList{Items: out}, nil
		}}
	registerWS(s, appendOp)
	registerREST(s, "POST /api/v1/sessions/{id}/messages", http.StatusCreated, appendOp, func(r *http.Request, p *appendParams) error {
		if err := DecodeJSON(r, p); err != nil {
			return err
		}
		if p.SessionID != "" && p.SessionID != r.PathValue("id") {
			return protocol.FieldError("sessionId", "does not match the path")
		}
		p.SessionID = r.PathValue("id")
		return nil
	})

	list := op[messageListParams]{name: "message.list", scope: auth.ScopeRead,
		run: func(ctx context.Context, pr *auth.Principal, p *messageListParams) (any, error) {
			ms, err := db.Messages(ctx, pr.UserID, p.SessionID, store.MessageQuery{AfterSeq: p.AfterSeq, BeforeSeq: p.BeforeSeq, Limit: p.Limit})
			if err != nil {
				return nil, err
			}
			return MessageList{Items: ms}, nil
		}}
	registerWS(s, list)
	registerREST(s, "GET /api/v1/sessions/{id}/messages", http.StatusOK, list, func(r *http.Request, p *messageListParams) error {
		p.SessionID = r.PathValue("id")
		var err error
		if p.AfterSeq, err = queryInt(r, "after_seq"); err != nil {
			return err
		}
		if p.BeforeSeq, err = queryInt(r, "before_seq"); err != nil {
			return err
		}
		n, err := queryInt(r, "limit")
		p.Limit = int(min(n, 1<<20))
		return err
	})
}
