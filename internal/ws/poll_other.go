//go:build !linux

package ws

import (
	"errors"
	"net"
)

// Elsewhere than Linux only the Portable transport runs (portable.go);
// these stand in for the Epoll parts, which ParseKind and Start refuse.

const (
	defaultKind    = Portable
	epollSupported = false
)

var errUnsupported = errors.New("epoll transport requires linux")

type loop struct{}

type fdTable struct{}

func newLoop(*Transport) (*loop, error)         { return nil, errUnsupported }
func (l *loop) run()                            {}
func (l *loop) add(*Conn) error                 { return errUnsupported }
func (l *loop) remove(*Conn)                    {}
func (l *loop) armOut(*Conn)                    {}
func (l *loop) closed(*Conn, int, string, bool) {}
func (l *loop) stop()                           {}
func (l *loop) closeFDs()                       {}
func (l *loop) appendConns(dst []*Conn) []*Conn { return dst }
func (t *Transport) writeLoop()                 {}
func (t *Transport) helpLoop()                  {}
func shutdownWrite(int) error                   { return nil }
func closeFD(int)                               {}
func peerAddr(int) net.Addr                     { return nil }
func resetOnClose(int) error                    { return nil }

// Uncork ends the hold of AttachOptions.Corked: the connection's writer
// writes what was queued meanwhile (the preamble, then frames) in one
// write. Call it exactly once, and only on a connection attached with
// Corked.
func (c *Conn) Uncork() { c.t.schedule(c) }

// flushFromLoop hands c, which the caller moved to wReady, to its writer.
func (c *Conn) flushFromLoop() { c.t.schedule(c) }
