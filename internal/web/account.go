package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/junctionhq/junction/internal/account"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// The REST mounting of the account application: one generic adapter turns
// a request into an operation's params (JSON body, path values, query),
// authenticates it, passes the Idempotency-Key, and answers the result as
// JSON or the error with the status Status maps its code to.

// IdempotencyHeader carries the REST idempotency key.
const IdempotencyHeader = account.IdempotencyHeader

// mountAccount registers every REST route of a's op table, and the OpenAPI
// document that describes them.
func (s *Server) mountAccount(a *account.Service) {
	s.mountOps(a.Ops())
	s.handle("GET /api/v1/openapi.json", s.serveOpenAPI)
}

// mountOps registers every REST route of an op table.
func (s *Server) mountOps(ops []account.Op) {
	for i := range ops {
		o := &ops[i]
		for _, rt := range o.Routes {
			s.handle(rt.Method+" "+rt.Path, s.serveOp(o, rt))
		}
	}
}

// ops returns every op table mounted: the account's, then the others.
func (s *Server) ops() []account.Op {
	return append(slices.Clip(s.deps.Account.Ops()), s.deps.Apps...)
}

// serveOp is the handler of one route of an operation.
func (s *Server) serveOp(o *account.Op, rt account.Route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var pr *auth.Principal
		if o.Scope != "" {
			var err error
			if pr, err = s.Principal(r); err != nil {
				writeError(w, err)
				return
			}
			if o.Scope != hub.ScopeAuthenticated && !pr.HasScope(o.Scope) {
				writeError(w, protocol.Errorf(protocol.CodeForbidden, "this endpoint needs scope %q", o.Scope))
				return
			}
		}
		params, err := routeParams(r, rt)
		if err != nil {
			writeError(w, err)
			return
		}
		ctx := account.WithBaseURL(r.Context(), baseURL(r))
		ctx = account.WithClientAddr(ctx, s.deps.Network.ClientAddr(r))
		res, err := o.Exec(ctx, pr, params, r.Header.Get(IdempotencyHeader))
		if err != nil {
			if f, ok := errors.AsType[*auth.Failure](err); ok {
				s.metrics.authFailures.WithLabelValues(f.Reason).Inc()
			}
			s.writeOpError(w, r, err)
			return
		}
		writeRaw(w, rt.Status, res)
	}
}

// routeParams builds an operation's params from the request: the JSON body
// (when the route takes one), then the members the path, the query and the
// route fix. A body member that contradicts the path or the route is
// refused, naming it.
func routeParams(r *http.Request, rt account.Route) (json.RawMessage, error) {
	raw := json.RawMessage("{}")
	if rt.Body != "" && !(rt.BodyOptional && (r.Body == nil || r.ContentLength == 0)) {
		var err error
		if raw, err = readBody(r); err != nil {
			return nil, err
		}
	}
	if len(rt.PathParams) == 0 && len(rt.Query) == 0 && len(rt.Fixed) == 0 {
		return raw, nil // decoded strictly by the operation, errors and all
	}
	var members map[string]json.RawMessage
	if err := hub.DecodeParams(raw, &members); err != nil {
		return nil, err
	}
	if members == nil {
		members = map[string]json.RawMessage{}
	}
	set := func(member, value, why string) error {
		if prev, ok := members[member]; ok {
			var v string
			if json.Unmarshal(prev, &v) != nil || v != value {
				return protocol.FieldError(member, "must be %q %s, or absent", value, why)
			}
		}
		members[member], _ = json.Marshal(value)
		return nil
	}
	for name, member := range rt.PathParams {
		if err := set(member, r.PathValue(name), "(the path names it)"); err != nil {
			return nil, err
		}
	}
	for member, value := range rt.Fixed {
		if err := set(member, value, "on this route"); err != nil {
			return nil, err
		}
	}
	q := r.URL.Query()
	for _, qp := range rt.Query {
		v := q.Get(qp.Name)
		if v == "" {
			if qp.Required {
				return nil, protocol.FieldError(qp.Name, "required")
			}
			continue
		}
		if qp.Type == "integer" {
			n, err := strconv.ParseInt(v, 10, 64)
			if qp.Max != 0 && (err != nil || n < qp.Min || n > qp.Max) {
				return nil, protocol.FieldError(qp.Name, "want an integer in %d..%d (absent for the default)", qp.Min, qp.Max)
			}
			if err != nil || n < 0 {
				return nil, protocol.FieldError(qp.Name, "want a non-negative integer")
			}
			members[qp.Member] = strconv.AppendInt(nil, n, 10)
			continue
		}
		members[qp.Member], _ = json.Marshal(v)
	}
	return json.Marshal(members)
}

// writeOpError answers a failed operation, logging faults once here.
func (s *Server) writeOpError(w http.ResponseWriter, r *http.Request, err error) {
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
