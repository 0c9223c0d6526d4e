package proxy

import (
	"encoding/json"

	"github.com/junctionhq/junction/protocol"
)

// The kinds of request a backend receives (Request.Kind).
const (
	KindMethod    = "method"    // a client called a routed method
	KindConnect   = "connect"   // a WebSocket is about to be accepted
	KindSubscribe = "subscribe" // a client subscribes to a hooked namespace's topic
	KindPublish   = "publish"   // a client publishes on a hooked namespace's topic
)

// Request is the JSON body of every request to a backend, signed as a
// Standard Webhooks message (headers webhook-id, webhook-timestamp,
// webhook-signature). docs/proxy.md is its reference.
type Request struct {
	Kind      string             `json:"kind"`
	Principal protocol.Principal `json:"principal"`
	// ConnID is the client's connection (method, subscribe; publish over
	// WebSocket); absent on connect and for REST publications.
	ConnID string `json:"connId,omitempty"`
	NodeID string `json:"nodeId,omitempty"`
	// Method, Params and Idem: a method call as the client sent it.
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Idem   string          `json:"idem,omitempty"`
	// Schedule names the scheduled job that made a method call (the
	// scheduler's backend action); absent for a client's call.
	Schedule string `json:"schedule,omitempty"`
	// Topic (subscribe, publish), its namespace and the parameters its
	// pattern bound; Data: what is being published, Event its event name
	// (absent for the default, message).
	Topic     string            `json:"topic,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Bound     map[string]string `json:"bound,omitempty"`
	Event     string            `json:"event,omitempty"`
	Data      json.RawMessage   `json:"data,omitempty"`
}

// Response is a backend's answer: exactly one of Result and Error.
//
//   - method: result is the method's result, sent to the client as is;
//   - connect: result may hold {"info": …}, attached to the connection;
//   - subscribe: any result allows;
//   - publish: result may hold {"data": …}, which replaces the published
//     data; without it the data is published unchanged.
type Response struct {
	Result json.RawMessage `json:"result"`
	Error  *BackendError   `json:"error"`
}

// BackendError is a backend's refusal, sent to the client as a protocol
// error with this code and message.
type BackendError struct {
	Code         protocol.Code  `json:"code"`
	Message      string         `json:"message"`
	RetryAfterMs int64          `json:"retryAfterMs"`
	Details      map[string]any `json:"details"`
}

// hookResult is the result of connect and publish hooks.
type hookResult struct {
	Info json.RawMessage `json:"info"`
	Data json.RawMessage `json:"data"`
}

// backendCodes are the error codes a backend may answer; any other code
// becomes internal.
var backendCodes = map[protocol.Code]bool{
	protocol.CodeBadRequest: true, protocol.CodeUnauthorized: true, protocol.CodeForbidden: true,
	protocol.CodeNotFound: true, protocol.CodeConflict: true, protocol.CodeRateLimited: true,
	protocol.CodeTooLarge: true, protocol.CodeTimeout: true, protocol.CodeUnavailable: true,
	protocol.CodeUnknownMethod: true,
}

// maxMessage bounds the message of a backend's error.
const maxMessage = 1024
