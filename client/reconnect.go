package client

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// supervise watches the live connection and, when it ends, reconnects or
// closes the client. It is the only goroutine that replaces the connection
// and runs reconnect hooks, and it ends with finish.
func (c *Client) supervise(cn *conn) {
	attempt := 0 // reconnect attempts since the last stable connection
	for {
		<-cn.exited
		c.mu.Lock()
		if c.cur == cn {
			c.cur = nil
		}
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			c.finish(nil)
			return
		}
		c.closeCode.Store(int32(cn.closeCode))
		c.setState(StateDisconnected, cn.err)
		if !c.opts.Reconnect || !cn.reconnectAdvised() {
			c.finish(cn.err)
			return
		}
		if time.Since(cn.connectedAt) >= c.stableAfter() {
			attempt = 0
		}
		var delay time.Duration
		if cn.shutdownSeen && cn.shutdownAfter > 0 {
			delay = cn.shutdownAfter + rand.N(max(cn.shutdownAfter/4, c.opts.MinBackoff))
		} else {
			delay = c.backoff(attempt)
			attempt++
		}
		for {
			if !c.sleep(delay) {
				c.finish(nil)
				return
			}
			c.setState(StateConnecting, nil)
			next, err := c.connect(c.ctx)
			if err == nil {
				cn = next
				break
			}
			if c.ctx.Err() != nil {
				c.finish(nil)
				return
			}
			c.setState(StateDisconnected, err)
			if c.terminal(err) {
				c.finish(err)
				return
			}
			delay = c.backoff(attempt)
			attempt++
		}
		c.connected(cn, true)
	}
}

// reconnectAdvised reports whether the way the connection ended allows a
// reconnect: no close frame (a dropped connection, a silent server), or a
// close code whose advice (protocol.DisconnectFor) is to reconnect. After
// server.shutdown every code but the terminal 4000-4099 allows it.
func (cn *conn) reconnectAdvised() bool {
	if cn.closeCode == 0 {
		return true
	}
	d, _ := protocol.DisconnectFor(cn.closeCode)
	switch {
	case d.Terminal():
		return false
	case cn.shutdownSeen:
		return true
	}
	return d.Reconnect.Advised()
}

// terminal reports whether a failed reconnect must not be retried: the
// server refused the credential and there is no TokenFunc to get another.
func (c *Client) terminal(err error) bool {
	var he *HandshakeError
	if !errors.As(err, &he) || c.opts.TokenFunc != nil {
		return false
	}
	return he.StatusCode == http.StatusUnauthorized || he.StatusCode == http.StatusForbidden
}

// backoff returns the delay before reconnect attempt n (from 0): a random
// duration between MinBackoff and min(MaxBackoff, MinBackoff·2^(n+1)), so
// that clients dropped together do not come back together.
func (c *Client) backoff(n int) time.Duration {
	lo, hi := c.opts.MinBackoff, c.opts.MaxBackoff
	ceil := lo
	for i := 0; i <= n && ceil < hi; i++ {
		ceil *= 2
	}
	ceil = min(ceil, hi)
	return lo + rand.N(ceil-lo+1)
}

// stableAfter is how long a connection must have stayed up for the backoff
// to start again from MinBackoff.
func (c *Client) stableAfter() time.Duration {
	return min(c.opts.MaxBackoff, 10*time.Second)
}

// sleep waits d; it returns false if the client closed meanwhile.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// refreshToken answers token.expiring: with a TokenFunc, it gets a fresh
// token and sends it in-band with method "auth.refresh" {"token": ...} on
// the same connection. A server that does not support in-band refresh
// answers unknown_method, which is ignored: the server then closes the
// connection with 4001 when the token expires, and a reconnect uses a fresh
// token from TokenFunc. It runs on readLoop and does its work on a goroutine
// of its own, one at a time.
func (c *Client) refreshToken(cn *conn) {
	if c.opts.TokenFunc == nil {
		c.log.Info("client: token expiring and no TokenFunc to refresh it")
		return
	}
	if !c.refreshing.CompareAndSwap(false, true) {
		return
	}
	c.wg.Go(func() {
		defer c.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(cn.ctx, c.opts.CallTimeout)
		defer cancel()
		token, err := c.opts.TokenFunc(ctx)
		if err != nil {
			c.log.Warn("client: refresh token", "err", err)
			return
		}
		params, err := json.Marshal(protocol.RefreshParams{Token: token})
		if err != nil {
			c.log.Warn("client: refresh token", "err", err)
			return
		}
		_, err = c.callOn(ctx, cn, "auth.refresh", params, "")
		var pe *protocol.Error
		switch {
		case errors.As(err, &pe) && pe.Code == protocol.CodeUnknownMethod:
			c.log.Debug("client: server does not support auth.refresh")
		case err != nil:
			c.log.Warn("client: refresh token", "err", err)
		}
	})
}
