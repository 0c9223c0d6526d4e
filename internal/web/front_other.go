//go:build !linux

package web

import (
	"errors"
	"net"
)

// Elsewhere than Linux the front door accepts through net only: every
// incoming connection is a net.Conn and these are never reached.

var errWouldBlock = errors.New("web: would block")

func (f *Front) acceptRaw(net.Listener) (bool, error) { return false, nil }
func readNow(int, []byte) (int, error)                { return 0, net.ErrClosed }
func writeNow(int, []byte) (int, error)               { return 0, net.ErrClosed }
func shutdownWrite(int)                               {}
func closeFD(int)                                     {}
func fdConn(int) (net.Conn, error)                    { return nil, net.ErrClosed }
