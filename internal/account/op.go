package account

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// An operation of the account API is defined once, in the op table (Ops),
// and exposed twice: web mounts it as REST routes, and Register adds the
// data operations to the hub's method table under the same name. Both
// transports hand Exec the params as JSON; it decodes them into the same
// params type, checks them the same way, shares idempotency records (a key
// used on REST and repeated on the WebSocket answers the first result) and
// returns the same JSON result.

// Op is one operation of the table.
type Op struct {
	// Name is the WebSocket method and the idempotency fingerprint,
	// "session.create".
	Name string
	// Scope is "" for a public operation (REST only: login, challenge,
	// refresh, pairing; no principal), hub.ScopeAuthenticated, or the auth
	// scope the principal needs.
	Scope string
	// Mutating operations honour idempotency keys.
	Mutating bool
	// WS operations are also WebSocket methods (Register).
	WS bool
	// NoApps refuses app principals (API keys, also acting for a user who
	// installed the app): operations on the account itself (pairing a
	// device, revoking one, logging out) are the user's alone.
	NoApps bool
	// Routes are the REST routes of the operation, with what the OpenAPI
	// document says of them.
	Routes []Route
	// Params and Result are zero values of the params and result types
	// (protocol types), for documentation generators.
	Params, Result any

	exec func(ctx context.Context, pr *auth.Principal, params json.RawMessage, idemKey string) (json.RawMessage, error)
}

// Route is one REST route of an operation. The REST adapter (web) builds
// the params from the JSON body, the path values (PathParams), the query
// (Query) and Fixed, then calls Op.Exec.
type Route struct {
	Method string // "POST"
	Path   string // as registered: "/api/v1/sessions/{id}"
	Status int    // success status
	// OperationID, Summary and Tag describe the route in the OpenAPI
	// document; Body and Result name its request and response schemas
	// (Body "" for no body).
	OperationID, Summary, Tag string
	Body, Result              string
	// BodyOptional accepts a request without a body (an empty object).
	BodyOptional bool
	// PathParams maps a path wildcard to the params member it fills.
	PathParams map[string]string
	// Query lists the query parameters the route reads.
	Query []QueryParam
	// Fixed are params members the route sets ("field": "metadata" on
	// PUT .../metadata); a body may repeat them but not contradict them.
	Fixed map[string]string
}

// QueryParam is a query parameter that fills a params member.
type QueryParam struct {
	Name     string // in the URL: "after_seq"
	Member   string // in the params: "afterSeq"
	Type     string // "string" or "integer" (non-negative)
	Desc     string
	Required bool
	// Min and Max bound an integer when Max is not zero: a value outside
	// Min..Max is refused naming the parameter (limit=0 does not mean the
	// default: absent does).
	Min, Max int64
}

// Exec runs the operation for pr (nil for a public operation) with params
// as JSON (decoded strictly: unknown members and wrong types are
// bad_request naming the field). idemKey, when set and the operation
// mutates, makes it run at most once per principal and key. The error is a
// *protocol.Error (possibly inside an *auth.Failure, whose Reason the
// caller counts), or a fault the caller logs and answers as internal.
func (o *Op) Exec(ctx context.Context, pr *auth.Principal, params json.RawMessage, idemKey string) (json.RawMessage, error) {
	return o.exec(ctx, pr, params, idemKey)
}

// Define completes o with its params type P, its check and its run, as the
// account's own operations are: strict decode, the route's bounds, the
// check, NoApps, idempotency per principal and key for a Mutating op (the
// same records and key space), and the mapping of store errors. Other
// application packages (internal/apps) build their op tables with it, so
// that web mounts them with the same adapter and the same contract.
func Define[P any](s *Service, o Op, result any, check func(*P) error, run func(ctx context.Context, pr *auth.Principal, p *P) (any, error)) Op {
	return define(s, o, result, check, run)
}

// define completes o with its params type P, its check and its run.
func define[P any](s *Service, o Op, result any, check func(*P) error, run func(ctx context.Context, pr *auth.Principal, p *P) (any, error)) Op {
	o.Params, o.Result = *new(P), result
	name, mutating, noApps := o.Name, o.Mutating, o.NoApps
	bounded := boundedParams(o.Routes)
	o.exec = func(ctx context.Context, pr *auth.Principal, raw json.RawMessage, key string) (json.RawMessage, error) {
		if noApps && pr != nil && pr.AppID != "" {
			return nil, protocol.Errorf(protocol.CodeForbidden, "%s is not available to apps", name)
		}
		p := new(P)
		if err := hub.DecodeParams(raw, p); err != nil {
			return nil, err
		}
		if err := checkBounds(raw, bounded); err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(p); err != nil {
				return nil, err
			}
		}
		call := func() (json.RawMessage, error) {
			res, err := run(ctx, pr, p)
			if err != nil {
				return nil, err
			}
			return json.Marshal(res)
		}
		if key == "" || !mutating || pr == nil {
			res, err := call()
			return res, s.mapErr(ctx, pr, err)
		}
		res, err := s.once(ctx, pr, name, key, p, call)
		return res, s.mapErr(ctx, pr, err)
	}
	return o
}

// mapErr is mapStoreErr, except that a not-found for a principal whose user
// has no account says so and how to get one: a token minted with "junction
// token" names any user, and its data requests would otherwise answer a
// bare "not found". The account is looked up only on that path.
func (s *Service) mapErr(ctx context.Context, pr *auth.Principal, err error) error {
	if pr != nil && pr.UserID != "" && errors.Is(err, store.ErrNotFound) {
		if _, aerr := s.deps.Store.Account(ctx, pr.UserID); errors.Is(aerr, store.ErrNotFound) {
			return protocol.Errorf(protocol.CodeNotFound, "no account for user %q: data belongs to an account, "+
				"which a key login creates (POST /api/v1/auth/challenge, then POST /api/v1/auth/login, docs/api.md); "+
				"use the access token that login returns (tokens minted with 'junction token' name a user without creating an account)", pr.UserID).
				WithDetail("reason", "no_account")
		}
	}
	return mapStoreErr(err)
}

// Idempotency settings.
const (
	// IdempotencyHeader carries the REST idempotency key.
	IdempotencyHeader = "Idempotency-Key"
	maxIdemKey        = 200
)

// once runs call at most once per (principal, key): the one place the
// account operations meet idempotency. The fingerprint is the operation
// name and its params, so the same key with other params is a conflict.
// The records and their ttl are the hub's (hub.Hub.Idempotent, over the
// records the binary keeps in the store, so they survive restarts): one key
// space per principal for REST and WebSocket.
func (s *Service) once(ctx context.Context, pr *auth.Principal, name, key string, params any, call func() (json.RawMessage, error)) (json.RawMessage, error) {
	if len(key) > maxIdemKey {
		return nil, protocol.FieldError("idempotencyKey", "over %d bytes", maxIdemKey)
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	return s.deps.Hub.Idempotent(ctx, pr.Key(), key, hub.Fingerprint(name, raw), call)
}

// mapStoreErr turns a store error into a protocol error; protocol errors
// (also inside an *auth.Failure) and unknown faults (which become
// "internal" at the edge) pass through unchanged.
func mapStoreErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*protocol.Error](err); ok {
		return err
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

// authFailure is a refused login, refresh or pairing: the client gets pe,
// and the edge counts reason (an auth failure reason or a word such as
// "refresh") in its authentication failure metric.
func authFailure(reason string, pe *protocol.Error) error {
	return &auth.Failure{Reason: reason, Err: pe}
}

// Decoding helpers shared by the params checks.

// decodeB64 decodes a standard base64 field (RFC 4648 §4, padded). Go's
// decoder skips CR and LF anywhere, as MIME allows; the API promises the
// RFC's plain alphabet, so a line break is refused like any other byte
// outside it.
func decodeB64(field, s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, protocol.FieldError(field, "not standard base64 (line breaks are not allowed)")
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, protocol.FieldError(field, "not standard base64")
	}
	return b, nil
}

// boundedParams returns the query parameters of routes that have a range
// (QueryParam.Max): their members are checked in every params, REST's and
// WebSocket's alike.
func boundedParams(routes []Route) []QueryParam {
	var out []QueryParam
	for _, rt := range routes {
		for _, qp := range rt.Query {
			if qp.Max != 0 && !slices.ContainsFunc(out, func(o QueryParam) bool { return o.Member == qp.Member }) {
				out = append(out, qp)
			}
		}
	}
	return out
}

// checkBounds refuses a present member of raw (already decoded strictly)
// outside its parameter's range: {"limit": 0} is not "the default", which
// only an absent member is. The params types cannot tell 0 from absent.
func checkBounds(raw json.RawMessage, bounded []QueryParam) error {
	if len(bounded) == 0 {
		return nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil // decoded strictly before: not an object means null
	}
	for _, qp := range bounded {
		v, ok := members[qp.Member]
		if !ok || string(v) == "null" {
			continue
		}
		if n, err := strconv.ParseInt(string(v), 10, 64); err != nil || n < qp.Min || n > qp.Max {
			return protocol.FieldError(qp.Member, "want an integer in %d..%d (absent for the default)", qp.Min, qp.Max)
		}
	}
	return nil
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

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
