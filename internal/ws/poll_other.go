//go:build !linux

package ws

import (
	"errors"
	"net"
)

// errUnsupported is returned by Start on systems without epoll. A portable
// reader (one goroutine per connection feeding the same parser) would slot
// in here; Junction's servers run on Linux, so it is not written yet.
var errUnsupported = errors.New("epoll transport requires linux")

type loop struct{}

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
func shutdownWrite(int) error                   { return nil }
func closeFD(int)                               {}
func peerAddr(int) net.Addr                     { return nil }
func resetOnClose(int) error                    { return nil }
func (c *Conn) dropLocked()                     {}
func (c *Conn) Uncork()                         {}
func (c *Conn) flushFromLoop()                  {}
