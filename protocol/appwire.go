package protocol

// Names an app backend uses outside the frames (docs/apps.md): the headers
// of its session connection's upgrade and the types of the webhooks it
// receives (the body's "type", also sent as the Junction-Event header).
const (
	// HeaderAppTicket carries an app session's single-use start ticket (from
	// session.start) at the WebSocket upgrade, beside the app's API key.
	HeaderAppTicket = "Junction-Ticket"
	// HeaderAppResume carries an app session's resume token (from
	// apps.hello) at the upgrade, beside the app's API key: the connection
	// reattaches to the session.
	HeaderAppResume = "Junction-Resume"
	// HeaderWebhookEvent repeats a webhook's type outside the signed body,
	// for routing; the body's "type" is the one to trust.
	HeaderWebhookEvent = "Junction-Event"

	// WebhookSessionStart is the type of the webhook that starts an app
	// session (AppSessionStartHook).
	WebhookSessionStart = "session.start"
	// WebhookSessionStop is the type of the webhook that tells the app a
	// session stopped (AppSessionStopHook).
	WebhookSessionStop = "session.stop"
)
