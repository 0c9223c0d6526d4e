package redistest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// CutProxy is a loopback TCP proxy in front of a Redis server (or anything
// else) that a test can cut — every connection closed, new ones closed at
// once, as behind a firewall that rejects — and restore. Clients see
// resets, never a silent network (for that, see the cluster package's
// freeze proxy).
type CutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool                  // guarded by mu
	conns map[net.Conn]struct{} // guarded by mu
	wg    sync.WaitGroup
}

// StartCutProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func StartCutProxy(t testing.TB, target string) *CutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &CutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.pipe(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.SetCut(true)
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *CutProxy) Addr() string { return p.ln.Addr().String() }

// SetCut cuts the proxy (closing every connection) or restores it.
func (p *CutProxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

func (p *CutProxy) pipe(c net.Conn) {
	if !p.track(c) {
		return
	}
	defer p.forget(c)
	u, err := net.Dial("tcp", p.target)
	if err != nil || !p.track(u) {
		return
	}
	defer p.forget(u)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done // either side ended: end both
	c.Close()
	u.Close()
	<-done
}

// track registers c, or closes it when the proxy is cut.
func (p *CutProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *CutProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
