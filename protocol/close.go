package protocol

// WebSocket close codes used by Junction, with their reconnect advice.
//
//	1000 normal           the session ended on purpose         do not reconnect unless the app wants to
//	1001 going away       the peer is leaving                  reconnect with backoff
//	1002 protocol error   a WebSocket protocol violation       reconnect with backoff after fixing the client
//	1003 unsupported data a binary message was sent            fix the client
//	1008 policy           a policy forbids the connection      do not reconnect automatically
//	1009 too big          a message exceeded maxFrameBytes     fix the client
//	1011 internal         server fault                         reconnect with backoff
//	1012 restart          server restarting / draining         reconnect soon (see server.shutdown)
//	1013 try later        server overloaded                    reconnect with a longer backoff
//	4000-4099 terminal    do not reconnect with the same credential
//	  4001 token expired, 4003 forbidden (device revoked), 4009 replaced by a newer connection of the same device
//	4100-4199 reconnect advised
//	  4108 slow consumer: the outbound queue overflowed; reconnect and resume
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

	CloseHeartbeatTimeout = 4102
	CloseSlowConsumer     = 4108
)

// ReconnectAdvised reports whether a client should reconnect automatically
// after the connection was closed with code.
func ReconnectAdvised(code int) bool {
	switch {
	case code >= 4000 && code <= 4099:
		return false
	case code >= 4100 && code <= 4199:
		return true
	}
	switch code {
	case CloseNormal, ClosePolicy, CloseTooBig, CloseUnsupportedData:
		return false
	}
	return true
}

// CloseReason returns the documented short reason for a close code.
func CloseReason(code int) string {
	switch code {
	case CloseNormal:
		return "normal closure"
	case CloseGoingAway:
		return "going away"
	case CloseProtocolError:
		return "protocol error"
	case CloseUnsupportedData:
		return "binary messages are not supported"
	case ClosePolicy:
		return "policy violation"
	case CloseTooBig:
		return "message too big"
	case CloseInternal:
		return "internal error"
	case CloseRestart:
		return "server restart"
	case CloseTryLater:
		return "try again later"
	case CloseTokenExpired:
		return "token expired"
	case CloseForbidden:
		return "forbidden"
	case CloseReplaced:
		return "replaced by a newer connection"
	case CloseHeartbeatTimeout:
		return "heartbeat timeout"
	case CloseSlowConsumer:
		return "slow consumer"
	}
	return ""
}
