package protocol

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Clients branch on codes,
// never on messages.
type Code string

// The stable error codes of protocol v1.
const (
	CodeInvalidFrame  Code = "invalid_frame"  // the frame is not valid JSON or not a valid frame shape
	CodeBadRequest    Code = "bad_request"    // the params are invalid; details.field names the offending field
	CodeUnauthorized  Code = "unauthorized"   // no valid credential
	CodeForbidden     Code = "forbidden"      // the credential lacks the scope or right
	CodeNotFound      Code = "not_found"      // the target does not exist
	CodeConflict      Code = "conflict"       // version mismatch; details carry the current version
	CodeUnknownMethod Code = "unknown_method" // no such method (or not registered by an RPC target)
	CodeRateLimited   Code = "rate_limited"   // too many requests; see retryAfterMs
	CodeTooLarge      Code = "too_large"      // the frame or a value is over its limit
	CodeTimeout       Code = "timeout"        // the operation did not finish in time
	CodeUnavailable   Code = "unavailable"    // a dependency or target is not reachable now
	CodeInternal      Code = "internal"       // a server fault; details never reach the client
)

// Codes lists the stable error codes.
var Codes = []Code{CodeInvalidFrame, CodeBadRequest, CodeUnauthorized, CodeForbidden, CodeNotFound, CodeConflict,
	CodeUnknownMethod, CodeRateLimited, CodeTooLarge, CodeTimeout, CodeUnavailable, CodeInternal}

// JSONSchemaEnum implements SchemaEnum: a code is one of Codes.
func (Code) JSONSchemaEnum() []any {
	out := make([]any, len(Codes))
	for i, c := range Codes {
		out[i] = string(c)
	}
	return out
}

// Retryable reports whether a request that failed with the code may succeed
// if repeated unchanged later.
func (c Code) Retryable() bool {
	switch c {
	case CodeRateLimited, CodeTimeout, CodeUnavailable, CodeInternal:
		return true
	}
	return false
}

// Error is the error object of a failed response. It implements error so that
// handlers can return it directly; any other error a handler returns reaches
// the client as CodeInternal with a generic message.
type Error struct {
	Code         Code           `json:"code"`
	Message      string         `json:"message"`
	Retryable    bool           `json:"retryable"`
	RetryAfterMs int64          `json:"retryAfterMs,omitempty"`
	Details      map[string]any `json:"details,omitempty"`
}

// ErrorBody is the body of a failed REST request.
type ErrorBody struct {
	Error *Error `json:"error" schema:"nonnull"`
}

// Error implements error.
func (e *Error) Error() string {
	return string(e.Code) + ": " + e.Message
}

// Errorf returns an *Error with the code, a formatted message and the code's
// default retryability.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: code.Retryable()}
}

// FieldError returns a bad_request error naming the offending field in
// details.field.
func FieldError(field, format string, args ...any) *Error {
	e := Errorf(CodeBadRequest, "%s: %s", field, fmt.Sprintf(format, args...))
	e.Details = map[string]any{"field": field}
	return e
}

// WithDetail returns e with details[key] set to value.
func (e *Error) WithDetail(key string, value any) *Error {
	if e.Details == nil {
		e.Details = map[string]any{}
	}
	e.Details[key] = value
	return e
}

// AsError returns the *Error in err's chain, or an internal error with a
// generic message when there is none, so that internal details never reach a
// client.
func AsError(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: CodeInternal, Message: "internal error", Retryable: true}
}
