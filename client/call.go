package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"

	"github.com/junctionhq/junction/internal/jsonscan"
	"github.com/junctionhq/junction/protocol"
)

// Call sends a request for method with params (encoded as JSON; it must
// encode to an object, or be nil) and waits for its response. When result
// is non-nil the response's result is decoded into it.
//
// A failed response returns its *protocol.Error as is, so errors.As works
// and the code is kept. A ctx without a deadline gets Options.CallTimeout.
// When ctx ends first, Call returns ctx.Err() and a late response is
// dropped.
//
// Calls are never queued across connections: while the client is
// disconnected and waiting to reconnect, Call fails at once with a
// *protocol.Error of code "unavailable" (retryable); a call whose
// connection dies before the response fails the same way, and the server
// may or may not have executed it (use CallIdem to repeat it safely). After
// Close, Call returns ErrClosed.
func (c *Client) Call(ctx context.Context, method string, params any, result any) error {
	return c.CallIdem(ctx, method, params, "", result)
}

// CallIdem is Call with an idempotency key: the server deduplicates
// requests with the same key per principal and answers a repeat with the
// first result, also while the first is still running. An empty idem is
// the same as Call.
func (c *Client) CallIdem(ctx context.Context, method string, params any, idem string, result any) error {
	raw, err := encodeParams(method, params)
	if err != nil {
		return err
	}
	res, err := c.call(ctx, method, raw, idem)
	if err != nil {
		return err
	}
	if result != nil && len(res) > 0 {
		if err := json.Unmarshal(res, result); err != nil {
			return fmt.Errorf("client: decode result of %s: %w", method, err)
		}
	}
	return nil
}

// CallRaw is Call with params and result as raw JSON. params must be a JSON
// object or empty.
func (c *Client) CallRaw(ctx context.Context, method string, params json.RawMessage) (json.RawMessage, error) {
	raw, err := encodeParams(method, params)
	if err != nil {
		return nil, err
	}
	return c.call(ctx, method, raw, "")
}

// Send queues one raw frame on the current connection, for frames that are
// not calls: events (progress, for example) or hand-made responses. Its
// members must be compact JSON (see protocol.Frame). It returns once the
// frame is queued, not written.
func (c *Client) Send(ctx context.Context, f *protocol.Frame) error {
	if c == nil {
		return ErrNilClient
	}
	b, err := f.Append(nil)
	if err != nil {
		return fmt.Errorf("client: encode frame: %w", err)
	}
	cn, err := c.current()
	if err != nil {
		return err
	}
	if limit := cn.maxFrame.Load(); int64(len(b)) > limit {
		return protocol.Errorf(protocol.CodeTooLarge, "frame of %d bytes is over the server's limit of %d", len(b), limit)
	}
	if err := cn.enqueue(ctx, b); err != nil {
		return c.connErr(err)
	}
	return nil
}

// encodeParams encodes params as compact JSON and checks that it is an
// object (or null, or absent).
func encodeParams(method string, params any) (json.RawMessage, error) {
	if params == nil {
		return nil, nil
	}
	if raw, ok := params.(json.RawMessage); ok && len(raw) == 0 {
		return nil, nil
	}
	raw, err := json.Marshal(params) // compact, also for a json.RawMessage
	if err != nil {
		return nil, fmt.Errorf("client: encode params of %s: %w", method, err)
	}
	if raw[0] != '{' && string(raw) != "null" {
		return nil, fmt.Errorf("client: encode params of %s: %w", method,
			protocol.Errorf(protocol.CodeBadRequest, "params must be a JSON object"))
	}
	return raw, nil
}

func (c *Client) call(ctx context.Context, method string, params json.RawMessage, idem string) (json.RawMessage, error) {
	cn, err := c.current()
	if err != nil {
		return nil, err
	}
	return c.callOn(ctx, cn, method, params, idem)
}

// callOn sends a request on cn and waits for its response.
func (c *Client) callOn(ctx context.Context, cn *conn, method string, params json.RawMessage, idem string) (json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
	}
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	b, err := protocol.AppendRequest(nil, id, method, params, idem, nil)
	if err != nil {
		return nil, fmt.Errorf("client: encode request %s: %w", method, err)
	}
	if limit := cn.maxFrame.Load(); int64(len(b)) > limit {
		return nil, protocol.Errorf(protocol.CodeTooLarge, "request of %d bytes is over the server's limit of %d", len(b), limit)
	}

	ch := make(chan *protocol.Frame, 1)
	cn.mu.Lock()
	cn.pending[id] = ch
	cn.mu.Unlock()
	defer func() {
		cn.mu.Lock()
		delete(cn.pending, id)
		cn.mu.Unlock()
	}()

	if err := cn.enqueue(ctx, b); err != nil {
		return nil, c.connErr(err)
	}
	select {
	case f := <-ch:
		if f.OK {
			return f.Result, nil
		}
		return nil, f.Error
	case <-cn.ctx.Done():
		// A response read just before the end still counts.
		select {
		case f := <-ch:
			if f.OK {
				return f.Result, nil
			}
			return nil, f.Error
		default:
		}
		return nil, c.connErr(errConnDone)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// connErr maps errConnDone to what a caller sees: ErrClosed when the client
// is closing, else a retryable unavailable error.
func (c *Client) connErr(err error) error {
	if !errors.Is(err, errConnDone) {
		return err
	}
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	return errConnLost()
}

// serve starts serving a request the server sent, on a goroutine of its own
// when a handler exists and the in-flight bound allows it. It runs on
// readLoop.
func (cn *conn) serve(f *protocol.Frame) {
	c := cn.c
	c.mu.Lock()
	fn := c.methods[f.Method]
	c.mu.Unlock()
	if fn == nil {
		cn.reply(f.ID, nil, protocol.Errorf(protocol.CodeUnknownMethod, "unknown method %q", f.Method))
		return
	}
	select {
	case c.sem <- struct{}{}:
	default:
		e := protocol.Errorf(protocol.CodeRateLimited, "too many requests in flight")
		e.RetryAfterMs = 100
		cn.reply(f.ID, nil, e)
		return
	}
	c.wg.Go(func() {
		defer func() { <-c.sem }()
		res, err := c.runHandler(cn.ctx, fn, f)
		cn.reply(f.ID, res, err)
	})
}

// runHandler runs fn, turning a panic into an error.
func (c *Client) runHandler(ctx context.Context, fn HandlerFunc, f *protocol.Frame) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("client: method handler panicked", "method", f.Method, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("client: handler of %s panicked: %v", f.Method, r)
		}
	}()
	return fn(ctx, f)
}

// reply queues the response to request id: res encoded as JSON, or err (a
// *protocol.Error in its chain as is, anything else as internal).
//
// Nothing is sent once the connection is ending (Close, or the connection
// lost): a handler that returned because the end canceled its context
// would otherwise race the close frame with an "internal" error (its
// ctx.Err()) that the gateway would relay to the caller as the target's
// answer, where it answers unavailable for a target that went away.
func (cn *conn) reply(id string, res any, err error) {
	if cn.ctx.Err() != nil {
		cn.log.Debug("client: response not sent: the connection is ending", "id", id)
		return
	}
	var b []byte
	if err == nil {
		raw, merr := encodeResult(res)
		if merr != nil {
			err = fmt.Errorf("client: encode result: %w", merr)
		} else {
			b = protocol.AppendResult(make([]byte, 0, len(id)+len(raw)+40), id, raw)
			if limit := cn.maxFrame.Load(); int64(len(b)) > limit {
				err = protocol.Errorf(protocol.CodeTooLarge, "result of %d bytes is over the server's limit of %d", len(b), limit)
			}
		}
	}
	if err != nil {
		var pe *protocol.Error
		if !errors.As(err, &pe) {
			cn.log.Error("client: method handler failed", "err", err)
		}
		b, err = protocol.AppendError(nil, id, protocol.AsError(err))
		if err != nil {
			cn.log.Error("client: encode error response", "err", err)
			b, _ = protocol.AppendError(nil, id, nil)
		}
	}
	if err := cn.enqueue(cn.ctx, b); err != nil {
		cn.log.Debug("client: response not sent", "id", id, "err", err)
	}
}

// encodeResult is json.Marshal(res), taking a json.RawMessage that
// json.Marshal would copy unchanged (valid, compact, printable ASCII with
// none of the characters it escapes for HTML) as is: handlers that relay
// raw JSON do not pay for its re-encoding.
func encodeResult(res any) (json.RawMessage, error) {
	if raw, ok := res.(json.RawMessage); ok && len(raw) > 0 && plainJSON(raw) {
		return raw, nil
	}
	return json.Marshal(res)
}

// plainJSON reports whether raw is one valid JSON value made of printable
// ASCII other than space, '<', '>' and '&'.
func plainJSON(raw []byte) bool {
	for _, c := range raw {
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	end, ok := jsonscan.Value(raw, 0)
	return ok && end == len(raw)
}
