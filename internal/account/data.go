package account

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// The encrypted data API: sessions, machines and artifacts (versioned
// objects with two encrypted fields each) and session messages. Encrypted
// values travel as standard base64 and are stored as opaque bytes.

// objectKind describes one versioned object type for the generic operations.
type objectKind struct {
	name   string    // "session": method prefix
	plural string    // "sessions": path segment
	schema string    // "Session": OpenAPI schema and operation id stem
	tag    string    // "Sessions": OpenAPI tag
	fields [2]string // JSON names of the encrypted fields
	paths  [2]string // path segments of their update routes
	result any       // zero value of the wire type
	get    func(ctx context.Context, account, id string) (any, error)
	list   func(ctx context.Context, account string, p store.Page) (any, error)
	update [2]func(ctx context.Context, account, id string, expected int64, v []byte) (any, []store.Update, error)
	del    func(ctx context.Context, account, id string) ([]store.Update, error)
}

var cursorQuery = []QueryParam{
	{Name: "cursor", Member: "cursor", Type: "string", Desc: "nextCursor of the previous page"},
	{Name: "limit", Member: "limit", Type: "integer", Desc: "page size, 1..100 (default 50)", Min: 1, Max: store.MaxPageLimit},
}

func checkListParams(p *protocol.ListParams) error {
	if len(p.Cursor) > 256 {
		return protocol.FieldError("cursor", "over 256 bytes")
	}
	return checkLimit(p.Limit)
}

func checkIDParams(p *protocol.IDParams) error { return checkID("id", p.ID) }

func checkFieldUpdate(p *protocol.FieldUpdate) error {
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

func checkB64s(fa, a, fb, b string) error {
	if _, err := decodeB64(fa, a); err != nil {
		return err
	}
	_, err := decodeB64(fb, b)
	return err
}

func mustB64(s string) []byte {
	b, _ := decodeB64("", s) // checked before
	return b
}

func checkMessageAppend(p *protocol.MessageAppend) error {
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
			return protocol.FieldError("messages["+itoa(i)+"].localId", "over 256 bytes")
		}
		if _, err := decodeB64("messages["+itoa(i)+"].body", m.Body); err != nil {
			return err
		}
	}
	return nil
}

func checkMessageList(p *protocol.MessageListParams) error {
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

func (s *Service) dataOps() []Op {
	db := s.deps.Store
	sessions := objectKind{
		name: "session", plural: "sessions", schema: "Session", tag: "Sessions", result: protocol.Session{},
		fields: [2]string{"metadata", "agentState"}, paths: [2]string{"metadata", "agent-state"},
		get: func(ctx context.Context, a, id string) (any, error) {
			v, err := db.Session(ctx, a, id)
			return wireSession(v), err
		},
		list: func(ctx context.Context, a string, p store.Page) (any, error) {
			items, next, err := db.Sessions(ctx, a, p)
			return protocol.ObjectList[protocol.Session]{Items: nonNilSlice(wireAll(items, wireSession)), NextCursor: next}, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateSessionMetadata(ctx, a, id, e, v)
				return wireSession(o), ups, err
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateSessionAgentState(ctx, a, id, e, v)
				return wireSession(o), ups, err
			},
		},
		del: db.DeleteSession,
	}
	machines := objectKind{
		name: "machine", plural: "machines", schema: "Machine", tag: "Machines", result: protocol.Machine{},
		fields: [2]string{"metadata", "daemonState"}, paths: [2]string{"metadata", "daemon-state"},
		get: func(ctx context.Context, a, id string) (any, error) {
			v, err := db.Machine(ctx, a, id)
			return wireMachine(v), err
		},
		list: func(ctx context.Context, a string, p store.Page) (any, error) {
			items, next, err := db.Machines(ctx, a, p)
			return protocol.ObjectList[protocol.Machine]{Items: nonNilSlice(wireAll(items, wireMachine)), NextCursor: next}, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateMachineMetadata(ctx, a, id, e, v)
				return wireMachine(o), ups, err
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateMachineDaemonState(ctx, a, id, e, v)
				return wireMachine(o), ups, err
			},
		},
		del: db.DeleteMachine,
	}
	artifacts := objectKind{
		name: "artifact", plural: "artifacts", schema: "Artifact", tag: "Artifacts", result: protocol.Artifact{},
		fields: [2]string{"header", "body"}, paths: [2]string{"header", "body"},
		get: func(ctx context.Context, a, id string) (any, error) {
			v, err := db.Artifact(ctx, a, id)
			return wireArtifact(v), err
		},
		list: func(ctx context.Context, a string, p store.Page) (any, error) {
			items, next, err := db.Artifacts(ctx, a, p)
			return protocol.ObjectList[protocol.Artifact]{Items: nonNilSlice(wireAll(items, wireArtifact)), NextCursor: next}, err
		},
		update: [2]func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error){
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateArtifactHeader(ctx, a, id, e, v)
				return wireArtifact(o), ups, err
			},
			func(ctx context.Context, a, id string, e int64, v []byte) (any, []store.Update, error) {
				o, ups, err := db.UpdateArtifactBody(ctx, a, id, e, v)
				return wireArtifact(o), ups, err
			},
		},
		del: db.DeleteArtifact,
	}

	var ops []Op
	ops = append(ops, objectOps(s, sessions, func(p *protocol.SessionCreate) error {
		return checkB64s("metadata", p.Metadata, "agentState", p.AgentState)
	}, func(ctx context.Context, a string, p *protocol.SessionCreate) (any, []store.Update, error) {
		o, ups, err := db.CreateSession(ctx, a, mustB64(p.Metadata), mustB64(p.AgentState))
		return wireSession(o), ups, err
	})...)
	ops = append(ops, objectOps(s, machines, func(p *protocol.MachineCreate) error {
		return checkB64s("metadata", p.Metadata, "daemonState", p.DaemonState)
	}, func(ctx context.Context, a string, p *protocol.MachineCreate) (any, []store.Update, error) {
		o, ups, err := db.CreateMachine(ctx, a, mustB64(p.Metadata), mustB64(p.DaemonState))
		return wireMachine(o), ups, err
	})...)
	ops = append(ops, objectOps(s, artifacts, func(p *protocol.ArtifactCreate) error {
		return checkB64s("header", p.Header, "body", p.Body)
	}, func(ctx context.Context, a string, p *protocol.ArtifactCreate) (any, []store.Update, error) {
		o, ups, err := db.CreateArtifact(ctx, a, mustB64(p.Header), mustB64(p.Body))
		return wireArtifact(o), ups, err
	})...)
	return append(ops, s.messageOps()...)
}

var idPath = map[string]string{"id": "id"}

// objectOps defines list, create, get, update and delete of one object kind.
func objectOps[C any](s *Service, k objectKind, checkCreate func(*C) error, create func(ctx context.Context, account string, p *C) (any, []store.Update, error)) []Op {
	base := "/api/v1/" + k.plural
	list := define(s, Op{Name: k.name + ".list", Scope: auth.ScopeRead, WS: true,
		Routes: []Route{{Method: "GET", Path: base, Status: http.StatusOK, OperationID: "list" + k.schema + "s",
			Summary: "A page of " + k.plural + ", newest first", Tag: k.tag, Result: k.schema + "List", Query: cursorQuery}},
	}, nil, checkListParams, func(ctx context.Context, pr *auth.Principal, p *protocol.ListParams) (any, error) {
		res, err := k.list(ctx, pr.UserID, store.Page{Cursor: p.Cursor, Limit: p.Limit})
		if err != nil {
			return nil, listErr(err)
		}
		if p.Cursor == "" && emptyPage(res) {
			// A first page that is empty may be a user without an account:
			// not found, which mapErr says is no account (api.md).
			if _, aerr := s.deps.Store.Account(ctx, pr.UserID); errors.Is(aerr, store.ErrNotFound) {
				return nil, aerr
			}
		}
		return res, nil
	})
	list.Result = listResult(k)

	createOp := define(s, Op{Name: k.name + ".create", Scope: auth.ScopeWrite, Mutating: true, WS: true,
		Routes: []Route{{Method: "POST", Path: base, Status: http.StatusCreated, OperationID: "create" + k.schema,
			Summary: "Create a " + k.name + " (both fields at version 1)", Tag: k.tag, Body: k.schema + "Create", BodyOptional: true, Result: k.schema}},
	}, k.result, checkCreate, func(ctx context.Context, pr *auth.Principal, p *C) (any, error) {
		obj, ups, err := create(ctx, pr.UserID, p)
		if err != nil {
			return nil, err
		}
		s.publishUpdates(ctx, pr.UserID, ups)
		return obj, nil
	})

	get := define(s, Op{Name: k.name + ".get", Scope: auth.ScopeRead, WS: true,
		Routes: []Route{{Method: "GET", Path: base + "/{id}", Status: http.StatusOK, OperationID: "get" + k.schema,
			Summary: "One " + k.name, Tag: k.tag, Result: k.schema, PathParams: idPath}},
	}, k.result, checkIDParams, func(ctx context.Context, pr *auth.Principal, p *protocol.IDParams) (any, error) {
		return k.get(ctx, pr.UserID, p.ID)
	})

	var updRoutes []Route
	for i, seg := range k.paths {
		f := k.fields[i]
		updRoutes = append(updRoutes, Route{Method: "PUT", Path: base + "/{id}/" + seg, Status: http.StatusOK,
			OperationID: "update" + k.schema + strings.ToUpper(f[:1]) + f[1:],
			Summary:     "Replace the " + k.name + "'s " + f + " if its version is expectedVersion (else 409 with the current version and value)",
			Tag:         k.tag, Body: "FieldUpdate", Result: k.schema, PathParams: idPath, Fixed: map[string]string{"field": f}})
	}
	update := define(s, Op{Name: k.name + ".update", Scope: auth.ScopeWrite, Mutating: true, WS: true, Routes: updRoutes},
		k.result, checkFieldUpdate, func(ctx context.Context, pr *auth.Principal, p *protocol.FieldUpdate) (any, error) {
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
		})

	del := define(s, Op{Name: k.name + ".delete", Scope: auth.ScopeWrite, Mutating: true, WS: true,
		Routes: []Route{{Method: "DELETE", Path: base + "/{id}", Status: http.StatusOK, OperationID: "delete" + k.schema,
			Summary: "Delete a " + k.name, Tag: k.tag, Result: "Deleted", PathParams: idPath}},
	}, protocol.Deleted{}, checkIDParams, func(ctx context.Context, pr *auth.Principal, p *protocol.IDParams) (any, error) {
		ups, err := k.del(ctx, pr.UserID, p.ID)
		if err != nil {
			return nil, err
		}
		s.publishUpdates(ctx, pr.UserID, ups)
		return protocol.Deleted{ID: p.ID, Deleted: true}, nil
	})
	return []Op{list, createOp, get, update, del}
}

func listResult(k objectKind) any {
	switch k.result.(type) {
	case protocol.Session:
		return protocol.ObjectList[protocol.Session]{}
	case protocol.Machine:
		return protocol.ObjectList[protocol.Machine]{}
	}
	return protocol.ObjectList[protocol.Artifact]{}
}

// listErr names the cursor when the store refuses it.
// emptyPage reports whether res, a page of objects, holds none.
func emptyPage(res any) bool {
	switch v := res.(type) {
	case protocol.ObjectList[protocol.Session]:
		return len(v.Items) == 0
	case protocol.ObjectList[protocol.Machine]:
		return len(v.Items) == 0
	case protocol.ObjectList[protocol.Artifact]:
		return len(v.Items) == 0
	}
	return false
}

func listErr(err error) error {
	if mapped := protocol.AsError(mapStoreErr(err)); mapped.Code == protocol.CodeBadRequest {
		return protocol.FieldError("cursor", "invalid cursor")
	}
	return err
}

func (s *Service) messageOps() []Op {
	db := s.deps.Store
	appendOp := define(s, Op{Name: "message.append", Scope: auth.ScopeWrite, Mutating: true, WS: true,
		Routes: []Route{{Method: "POST", Path: "/api/v1/sessions/{id}/messages", Status: http.StatusCreated, OperationID: "appendMessages",
			Summary: "Append 1..100 messages in one transaction; a repeated localId returns the stored message", Tag: "Messages",
			Body: "MessageAppend", Result: "MessageList", PathParams: map[string]string{"id": "sessionId"}}},
	}, protocol.MessageList{}, checkMessageAppend, func(ctx context.Context, pr *auth.Principal, p *protocol.MessageAppend) (any, error) {
		in := make([]store.NewMessage, len(p.Messages))
		for i, m := range p.Messages {
			in[i] = store.NewMessage{LocalID: m.LocalID, Body: mustB64(m.Body)}
		}
		out, ups, err := db.AppendMessages(ctx, pr.UserID, p.SessionID, in)
		if err != nil {
			return nil, err
		}
		s.publishUpdates(ctx, pr.UserID, ups)
		return protocol.MessageList{Items: wireAll(out, wireMessage)}, nil
	})

	list := define(s, Op{Name: "message.list", Scope: auth.ScopeRead, WS: true,
		Routes: []Route{{Method: "GET", Path: "/api/v1/sessions/{id}/messages", Status: http.StatusOK, OperationID: "listMessages",
			Summary: "A page of messages by seq", Tag: "Messages", Result: "MessageList", PathParams: map[string]string{"id": "sessionId"},
			Query: []QueryParam{
				{Name: "after_seq", Member: "afterSeq", Type: "integer", Desc: "messages with seq > after_seq, oldest first"},
				{Name: "before_seq", Member: "beforeSeq", Type: "integer", Desc: "messages with seq < before_seq, newest first (oldest first with after_seq)"},
				{Name: "limit", Member: "limit", Type: "integer", Desc: "1..100 (default 50)", Min: 1, Max: store.MaxPageLimit},
			}}},
	}, protocol.MessageList{}, checkMessageList, func(ctx context.Context, pr *auth.Principal, p *protocol.MessageListParams) (any, error) {
		ms, err := db.Messages(ctx, pr.UserID, p.SessionID, store.MessageQuery{AfterSeq: p.AfterSeq, BeforeSeq: p.BeforeSeq, Limit: p.Limit})
		if err != nil {
			return nil, err
		}
		return protocol.MessageList{Items: wireAll(ms, wireMessage)}, nil
	})
	return []Op{appendOp, list}
}
