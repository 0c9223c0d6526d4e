package protocol

// App session recovery (docs/apps.md, "Recovery"): the states a session
// passes through when its app's connection or its device is gone.
const (
	// AppStateResurrecting: the grace after the app's connection was lost
	// ended; the gateway sends session.start again (resumed: true, a new
	// ticket) on a schedule until the app connects or the budget runs out.
	AppStateResurrecting = "resurrecting"
	// AppStateDormant: the app's connection is gone and so is the device;
	// nothing is attempted until the device comes back (then the session is
	// resurrected) or apps.dormant_limit passes (then it stops with
	// device_gone).
	AppStateDormant = "dormant"
)
