package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// An operation of the account API is defined once and exposed twice: as a
// REST route and, for the data operations, as a WebSocket method of the same
// name. Both transports decode into the same params type, check it the same
// way, share idempotency records (a key used on REST and repeated on the
// WebSocket answers the first result) and return the same JSON result.

// checker is implemented by every params type: it reports the first invalid
// field as a protocol.FieldError. (Params types do not implement
// hub.Validator because REST fills path values after decoding the body.)
type checker interface{ check() error }

// op is one operation.
type op[P any] struct {
	name     string // WebSocket method and idempotency fingerprint, "session.create"
	scope    string // auth.ScopeRead or auth.ScopeWrite
	mutating bool   // honours idempotency keys
	run      func(ctx context.Context, pr *auth.Principal, p *P) (any, error)
}

// Idempotency settings. The records and their ttl are the hub's
// (hub.Hub.Idempotent): one key space per principal for REST and WebSocket.
const (
	// IdempotencyHeader carries the REST idempotency key.
	IdempotencyHeader = "Idempotency-Key"
	maxIdemKey        = 200
)

// execute checks params, runs o (through the idempotency records when key
// is set and o mutates) and returns the encoded result.
func execute[P any](ctx context.Context, s *Server, o op[P], pr *auth.Principal, p *P, key string) (json.RawMessage, error) {
	if c, ok := any(p).(checker); ok {
		if err := c.check(); err != nil {
			return nil, err
		}
	}
	call := func() (json.RawMessage, error) {
		res, err := o.run(ctx, pr, p)
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}
	if key == "" || !o.mutating {
		return call()
	}
	if len(key) > maxIdemKey {
		return nil, protocol.FieldError("idempotencyKey", "over %d bytes", maxIdemKey)
	}
	params, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return s.deps.Hub.Idempotent(ctx, pr.Key(), key, hub.Fingerprint(o.name, params), call)
}

// registerWS adds o to the hub's method table. Idempotency is handled by
// execute (hub.Hub.Idempotent, over the records the binary keeps in the
// store, so they survive restarts), with REST's fingerprint.
func registerWS[P any](s *Server, o op[P]) {
	hub.Handle(s.deps.Hub, hub.Method{Name: o.name, Scope: o.scope, Mode: hub.Serial},
		func(ctx context.Context, call *hub.Call, p *P) (any, error) {
			res, err := execute(ctx, s, o, call.Principal, p, call.Idem)
			if err != nil {
				return nil, mapStoreErr(err)
			}
			return res, nil
		})
	s.wsMethods = append(s.wsMethods, o.name)
}

// registerREST adds o as the route pattern. fill decodes the request (path
// values, query, body) into the params; status is the success status.
func registerREST[P any](s *Server, pattern string, status int, o op[P], fill func(r *http.Request, p *P) error) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		pr, err := s.Principal(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if o.scope != hub.ScopeAuthenticated && !pr.HasScope(o.scope) {
			writeError(w, protocol.Errorf(protocol.CodeForbidden, "this endpoint needs scope %q", o.scope))
			return
		}
		p := new(P)
		if fill != nil {
			if err := fill(r, p); err != nil {
				writeError(w, err)
				return
			}
		}
		ctx := context.WithValue(r.Context(), baseURLKey{}, baseURL(r))
		res, err := execute(ctx, s, o, pr, p, r.Header.Get(IdempotencyHeader))
		if err != nil {
			s.writeOpError(w, r, err)
			return
		}
		writeRaw(w, status, res)
	})
}

// writeOpError answers a failed operation, logging faults once here.
func (s *Server) writeOpError(w http.ResponseWriter, r *http.Request, err error) {
	err = mapStoreErr(err)
	pe := protocol.AsError(err)
	if pe.Code == protocol.CodeInternal {
		s.log.Error("request failed", "route", r.Pattern, "err", err)
	}
	writeError(w, err)
}

// baseURL returns scheme://host of the request as the client addressed it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func writeRaw(w http.ResponseWriter, status int, raw json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(raw, '\n'))
}

// mapStoreErr turns a store error into a protocol error; protocol errors
// and unknown faults (which become "internal") pass through unchanged.
func mapStoreErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	if ce, ok := errors.AsType[*store.ConflictError](err); ok {
		return protocol.Errorf(protocol.CodeConflict, "version mismatch: the current version is %d", ce.Current).
			WithDetail("currentVersion", ce.Current).
			WithDetail("value", base64.StdEncoding.EncodeToString(ce.Value))
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return protocol.Errorf(protocol.CodeNotFound, "not found")
	case errors.Is(err, store.ErrTooLarge):
		return protocol.Errorf(protocol.CodeTooLarge, "a value is over the size limit")
	case errors.Is(err, store.ErrInvalid):
		return protocol.Errorf(protocol.CodeBadRequest, "invalid argument")
	case errors.Is(err, store.ErrRevoked):
		return protocol.Errorf(protocol.CodeForbidden, "revoked")
	case errors.Is(err, store.ErrDuplicate):
		return protocol.Errorf(protocol.CodeConflict, "already exists")
	case errors.Is(err, store.ErrExpired):
		return protocol.Errorf(protocol.CodeBadRequest, "expired")
	}
	return err
}

// Decoding helpers shared by the params types.

// decodeB64 decodes a standard base64 field.
func decodeB64(field, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, protocol.FieldError(field, "not standard base64")
	}
	return b, nil
}

// queryInt reads an optional non-negative integer query parameter.
func queryInt(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, protocol.FieldError(name, "want a non-negative integer")
	}
	return n, nil
}

// decodeBody decodes the JSON body strictly; an empty body is allowed when
// optional.
func decodeBody(r *http.Request, v any, optional bool) error {
	if optional && (r.Body == nil || r.ContentLength == 0) {
		return nil
	}
	return DecodeJSON(r, v)
}

func checkID(field, id string) error {
	if id == "" {
		return protocol.FieldError(field, "required")
	}
	if len(id) > 64 {
		return protocol.FieldError(field, "over 64 bytes")
	}
	return nil
}

func checkLimit(limit int) error {
	if limit < 0 || limit > store.MaxPageLimit {
		return protocol.FieldError("limit", "want 0..%d", store.MaxPageLimit)
	}
	return nil
}
