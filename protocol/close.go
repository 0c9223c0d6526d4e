package protocol

// WebSocket close codes used by Junction. Each code Junction sends has one
// Disconnect below (its short reason and reconnect advice); the table in
// docs/PROTOCOL.md §6 is checked against it by a test. The transport
// (internal/ws), the hub and the Go SDK take their codes, reasons and
// advice from here.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	ClosePolicy          = 1008
	CloseTooBig          = 1009
	CloseInternal        = 1011
	CloseRestart         = 1012
	CloseTryLater        = 1013

	CloseTokenExpired = 4001
	CloseForbidden    = 4003
	CloseReplaced     = 4009
	CloseLockdown     = 4010
	CloseAdmin        = 4011

	CloseHeartbeatTimeout = 4102
	CloseSlowConsumer     = 4108
)

// Codes that are never sent in a close frame: an endpoint reports them
// locally (RFC 6455 §7.4.1).
const (
	// CloseNoStatus is reported when the peer's close frame carried no code.
	CloseNoStatus = 1005
	// CloseAbnormal is reported when the connection ended without a close
	// frame (dropped, reset, or cut after a timeout).
	CloseAbnormal = 1006
)

// Reconnect is a close code's advice to a client about reconnecting.
type Reconnect uint8

const (
	// ReconnectNo: do not reconnect automatically; the session ended on
	// purpose, or the client must change before it tries again.
	ReconnectNo Reconnect = iota
	// ReconnectNewToken: do not reconnect with the same credential; a new
	// one may.
	ReconnectNewToken
	// ReconnectBackoff: reconnect, with the usual randomized backoff.
	ReconnectBackoff
	// ReconnectSoon: the server is restarting; reconnect after the
	// server.shutdown event's reconnectAfterMs plus a random jitter.
	ReconnectSoon
	// ReconnectLater: the server is overloaded; reconnect with a longer
	// backoff.
	ReconnectLater
	// ReconnectResume: reconnect, and resume channels with since: frames
	// were dropped.
	ReconnectResume
)

// Advised reports whether a client should reconnect automatically.
func (r Reconnect) Advised() bool { return r >= ReconnectBackoff }

// String returns the advice in the words of docs/PROTOCOL.md's table.
func (r Reconnect) String() string {
	switch r {
	case ReconnectNo:
		return "no"
	case ReconnectNewToken:
		return "only with a new token"
	case ReconnectBackoff:
		return "yes, with backoff"
	case ReconnectSoon:
		return "yes, soon"
	case ReconnectLater:
		return "yes, with a longer backoff"
	case ReconnectResume:
		return "yes, and resume channels with `since`"
	}
	return "unknown"
}

// Disconnect is why a connection is closed: the close code, the short
// reason sent with it, and the advice to the client about reconnecting.
type Disconnect struct {
	Code      int
	Reason    string
	Reconnect Reconnect
}

// Terminal reports whether the code is in 4000-4099: the credential or the
// device may not connect again as it is (token expired, forbidden,
// replaced), whatever the server said before, even server.shutdown.
func (d Disconnect) Terminal() bool { return d.Code >= 4000 && d.Code <= 4099 }

// The Disconnects Junction sends, one per close code.
var (
	DisconnectNormal           = Disconnect{CloseNormal, "normal closure", ReconnectNo}
	DisconnectGoingAway        = Disconnect{CloseGoingAway, "going away", ReconnectBackoff}
	DisconnectProtocolError    = Disconnect{CloseProtocolError, "protocol error", ReconnectBackoff}
	DisconnectUnsupportedData  = Disconnect{CloseUnsupportedData, "binary messages are not supported", ReconnectNo}
	DisconnectPolicy           = Disconnect{ClosePolicy, "policy violation", ReconnectNo}
	DisconnectTooBig           = Disconnect{CloseTooBig, "message too big", ReconnectNo}
	DisconnectInternal         = Disconnect{CloseInternal, "internal error", ReconnectBackoff}
	DisconnectShutdown         = Disconnect{CloseRestart, "server restart", ReconnectSoon}
	DisconnectTryLater         = Disconnect{CloseTryLater, "try again later", ReconnectLater}
	DisconnectTokenExpired     = Disconnect{CloseTokenExpired, "token expired", ReconnectNewToken}
	DisconnectForbidden        = Disconnect{CloseForbidden, "forbidden", ReconnectNo}
	DisconnectReplaced         = Disconnect{CloseReplaced, "replaced by a newer connection", ReconnectNo}
	DisconnectLockdown         = Disconnect{CloseLockdown, "server in lockdown", ReconnectNo}
	DisconnectAdmin            = Disconnect{CloseAdmin, "disconnected by an administrator", ReconnectNo}
	DisconnectHeartbeatTimeout = Disconnect{CloseHeartbeatTimeout, "heartbeat timeout", ReconnectBackoff}
	DisconnectSlowConsumer     = Disconnect{CloseSlowConsumer, "slow consumer", ReconnectResume}
)

// disconnects is the table, in code order.
var disconnects = []Disconnect{
	DisconnectNormal, DisconnectGoingAway, DisconnectProtocolError, DisconnectUnsupportedData,
	DisconnectPolicy, DisconnectTooBig, DisconnectInternal, DisconnectShutdown, DisconnectTryLater,
	DisconnectTokenExpired, DisconnectForbidden, DisconnectReplaced, DisconnectLockdown, DisconnectAdmin,
	DisconnectHeartbeatTimeout, DisconnectSlowConsumer,
}

// Disconnects returns every Disconnect Junction sends, in code order.
func Disconnects() []Disconnect { return append([]Disconnect(nil), disconnects...) }

// DisconnectFor returns the Disconnect of code and whether code is one
// Junction sends. For any other code the advice follows its range:
// 4000-4099 are terminal (ReconnectNo), 4100-4199 and everything else
// advise reconnecting with backoff; the reason is empty.
func DisconnectFor(code int) (Disconnect, bool) {
	for _, d := range disconnects {
		if d.Code == code {
			return d, true
		}
	}
	d := Disconnect{Code: code, Reconnect: ReconnectBackoff}
	if code >= 4000 && code <= 4099 {
		d.Reconnect = ReconnectNo
	}
	return d, false
}

// ReconnectAdvised reports whether a client should reconnect automatically
// after the connection was closed with code (see DisconnectFor).
func ReconnectAdvised(code int) bool {
	d, _ := DisconnectFor(code)
	return d.Reconnect.Advised()
}

// CloseReason returns the documented short reason for a close code, or ""
// for a code Junction does not send.
func CloseReason(code int) string {
	d, _ := DisconnectFor(code)
	return d.Reason
}
