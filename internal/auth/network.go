package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lockdownPrefixes are the ranges allowed in lockdown besides loopback.
var lockdownPrefixes = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("169.254.0.0/16"),      // IPv4 link-local
	netip.MustParsePrefix("100.64.0.0/10"),       // Tailscale (CGNAT range)
	netip.MustParsePrefix("fc00::/7"),            // IPv6 unique local
	netip.MustParsePrefix("fe80::/10"),           // IPv6 link-local
	netip.MustParsePrefix("fd7a:115c:a1e0::/48"), // Tailscale IPv6 (inside fc00::/7; listed for clarity)
}

// NetworkPolicy decides which client addresses may connect. In lockdown (the
// "kill switch") only loopback, private LAN ranges (10/8, 172.16/12,
// 192.168/16, 169.254/16, fc00::/7, fe80::/10) and the Tailscale ranges
// (100.64.0.0/10, fd7a:115c:a1e0::/48) are allowed; otherwise every address
// is. The lockdown flag can be toggled at run time; NetworkPolicy is safe for
// concurrent use.
type NetworkPolicy struct {
	lockdown atomic.Bool
	// trusted are the proxies whose X-Forwarded-For is believed; set once at
	// construction.
	trusted []netip.Prefix

	mu    sync.Mutex // serializes SetLockdown, so the file follows the flag
	state string     // guarded by mu: the file that records lockdown on, or ""
}

// LockdownFile is the file in the data directory whose presence records
// that lockdown was turned on at run time, so that it survives a restart.
const LockdownFile = "lockdown"

// NewNetworkPolicy returns a policy with lockdown on or off, trusting
// X-Forwarded-For only from trustedProxies.
func NewNetworkPolicy(lockdown bool, trustedProxies []netip.Prefix) *NetworkPolicy {
	p := &NetworkPolicy{trusted: make([]netip.Prefix, 0, len(trustedProxies))}
	for _, pfx := range trustedProxies {
		if pfx.IsValid() {
			// Masked and unmapped so that Contains works on normalized addresses.
			a := pfx.Addr().Unmap()
			bits := pfx.Bits()
			if pfx.Addr().Is4In6() {
				bits -= 96
			}
			if bits >= 0 {
				p.trusted = append(p.trusted, netip.PrefixFrom(a, bits).Masked())
			}
		}
	}
	p.lockdown.Store(lockdown)
	return p
}

// PersistLockdown makes lockdown survive restarts through the file
// LockdownFile in dir: when the file exists lockdown is turned on now, and
// from now on SetLockdown creates the file when it turns lockdown on and
// removes it when it turns it off. Call it once, before serving.
func (p *NetworkPolicy) PersistLockdown(dir string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = filepath.Join(dir, LockdownFile)
	switch _, err := os.Stat(p.state); {
	case err == nil:
		p.lockdown.Store(true)
	case !errors.Is(err, fs.ErrNotExist):
		p.lockdown.Store(true) // fail closed: it may have been on
		return fmt.Errorf("read lockdown state: %w", err)
	}
	return nil
}

// SetLockdown turns lockdown on or off, and records it when PersistLockdown
// was called. It fails closed: turning lockdown on takes effect even when
// recording it fails, and turning it off fails (lockdown stays on) when the
// record cannot be removed. The error says the record failed.
func (p *NetworkPolicy) SetLockdown(on bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.lockdown.Store(true)
	}
	if p.state != "" {
		if err := writeLockdownState(p.state, on); err != nil {
			return fmt.Errorf("record lockdown %v: %w", on, err)
		}
	}
	if !on {
		p.lockdown.Store(false)
	}
	return nil
}

// writeLockdownState creates (on) or removes (off) the lockdown file,
// durably: the file and its directory entry are synced.
func writeLockdownState(name string, on bool) error {
	if !on {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return syncDir(filepath.Dir(name))
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString("lockdown was turned on at " + time.Now().UTC().Format(time.RFC3339) + "; remove this file, or turn lockdown off, to end it\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(name))
}

// syncDir syncs a directory, so that an entry created or removed in it
// survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lockdown reports whether lockdown is on.
func (p *NetworkPolicy) Lockdown() bool { return p.lockdown.Load() }

// TrustsProxies reports whether some proxy's X-Forwarded-For is believed:
// then a client's address may differ from its peer's.
func (p *NetworkPolicy) TrustsProxies() bool { return len(p.trusted) > 0 }

// ClientAddr returns the address of the client that made r: r.RemoteAddr,
// unless that is a trusted proxy, in which case X-Forwarded-For is walked
// from the right and the first hop that is not a trusted proxy is the client
// (the hops further left were written by the client and are not believed).
// When every hop is a trusted proxy the leftmost is returned. It returns the
// zero Addr when the address cannot be determined, including a malformed
// X-Forwarded-For hop from a trusted proxy. Addresses are unmapped
// (::ffff:10.0.0.1 becomes 10.0.0.1) and have no zone.
func (p *NetworkPolicy) ClientAddr(r *http.Request) netip.Addr {
	addr := parseHostAddr(r.RemoteAddr)
	if !addr.IsValid() || !p.trustedProxy(addr) {
		return addr
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		parts := strings.Split(hops[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			hop := strings.TrimSpace(parts[j])
			if hop == "" {
				continue
			}
			a := parseHostAddr(hop)
			if !a.IsValid() {
				return netip.Addr{}
			}
			addr = a
			if !p.trustedProxy(a) {
				return a
			}
		}
	}
	return addr
}

// Allowed reports whether r may proceed: always when lockdown is off;
// otherwise only when its client address is loopback or in a lockdown range.
func (p *NetworkPolicy) Allowed(r *http.Request) bool {
	if !p.Lockdown() {
		return true
	}
	return LocalAddr(p.ClientAddr(r))
}

// LocalAddr reports whether a is loopback, in a private LAN range or in a
// Tailscale range: the addresses lockdown lets through.
func LocalAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	if a.IsLoopback() {
		return true
	}
	return slices.ContainsFunc(lockdownPrefixes, func(p netip.Prefix) bool { return p.Contains(a) })
}

func (p *NetworkPolicy) trustedProxy(a netip.Addr) bool {
	return slices.ContainsFunc(p.trusted, func(pfx netip.Prefix) bool { return pfx.Contains(a) })
}

// parseHostAddr parses "ip", "ip:port" or "[ipv6]:port" and returns the
// address unmapped and without zone, or the zero Addr.
func parseHostAddr(s string) netip.Addr {
	// An empty zone in brackets ("[::%]:0") is malformed: netip.ParseAddr
	// refuses it, but netip.ParseAddrPort lets it through.
	if strings.HasPrefix(s, "[") && strings.Contains(s, "%]") {
		return netip.Addr{}
	}
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a = ap.Addr()
	} else if pa, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		a = pa
	} else {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}
