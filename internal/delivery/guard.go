package delivery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// ErrRefused means the address guard refused the target: its URL is not
// http(s), or the address it resolved to is loopback, private, link-local,
// multicast, unspecified or otherwise not public, and the target is not
// marked Internal. Nothing was sent.
var ErrRefused = errors.New("delivery: target refused by the address guard")

// notPublic lists ranges that are not public unicast beyond what netip's
// predicates cover: "this network", carrier-grade NAT (also Tailscale's
// range), IETF protocol assignments, benchmarking, reserved and broadcast,
// and the IPv6 discard, documentation and NAT64 prefixes (a NAT64 address
// embeds an IPv4 one that would need its own check).
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
}

// PublicAddr reports whether ip is a public unicast address, the only kind
// a target not marked Internal may reach.
func PublicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() ||
		ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// guardControl is the net.Dialer Control of guarded targets: it runs after
// name resolution, for each address the dialer tries, before connect(2),
// so a name that resolves to a private address (or a DNS answer that
// changes between a check and the dial) is refused before any packet.
func guardControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: dial address %q: %v", ErrRefused, address, err)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, ap.Addr())
	}
	return nil
}

// newDialer returns the dialer of guarded (guard true) or internal targets.
func newDialer(guard bool) *net.Dialer {
	d := &net.Dialer{Timeout: defaultConnectTimeout}
	if guard {
		d.Control = guardControl
	}
	return d
}
