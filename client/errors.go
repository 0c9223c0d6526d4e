package client

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/junctionhq/junction/protocol"
)

// ErrClosed is returned by the methods of a Client that was closed, by Close
// or after a connection ended for good (a terminal close code, or any
// disconnect when Options.Reconnect is off).
var ErrClosed = errors.New("client: closed")

// ErrNilClient is returned by the methods of a nil *Client, the value Dial
// returns with its error: a program that ignores Dial's error gets this
// from its next call instead of a nil dereference.
var ErrNilClient = errors.New("client: nil client (did Dial fail? check its error)")

// HandshakeError reports a WebSocket upgrade that the server refused with an
// HTTP status: 401 (missing or invalid credential), 403 (forbidden), 503
// (lockdown or overload), and so on. Err is the decoded JSON error body
// ({"error":{"code":...,"message":...}}), nil when the body was not one.
//
// HandshakeError unwraps to Err, so errors.As(err, &perr) with a
// *protocol.Error works on it too.
type HandshakeError struct {
	StatusCode int             // HTTP status of the refusal
	Err        *protocol.Error // decoded error body, or nil
}

// Error implements error.
func (e *HandshakeError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("client: handshake refused with http %d: %s", e.StatusCode, e.Err.Error())
	}
	return fmt.Sprintf("client: handshake refused with http %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// Unwrap returns the decoded error body.
func (e *HandshakeError) Unwrap() error {
	if e.Err == nil {
		return nil
	}
	return e.Err
}

// CloseError reports a connection that the server closed with a WebSocket
// close frame. It is the error passed to Options.OnState with
// StateDisconnected in that case.
type CloseError struct {
	Code   int    // WebSocket close code, see the Close* constants of package protocol
	Reason string // reason sent by the server
}

// Error implements error.
func (e *CloseError) Error() string {
	return fmt.Sprintf("client: connection closed by server: %d %s", e.Code, e.Reason)
}

// errNotConnected is returned by calls made while the client has no
// connection but will reconnect. It is retryable.
func errNotConnected() *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "not connected", Retryable: true}
}

// errConnLost is returned by calls whose connection died before they were
// answered. It is retryable; whether the request was executed is unknown (use
// an idempotency key to repeat it safely).
func errConnLost() *protocol.Error {
	return &protocol.Error{Code: protocol.CodeUnavailable, Message: "connection lost", Retryable: true}
}
