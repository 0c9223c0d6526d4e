package protocol

// DefaultPublicationEvent is the event name of a publication made without
// one. It is never stored or sent in the full protocol (an absent name means
// it); the compact protocol writes it out.
const DefaultPublicationEvent = "message"

// MaxPublicationEventLength bounds a publication's event name.
const MaxPublicationEventLength = 64

// reservedPublicationEvents are the compact protocol's control events
// (docs/iot.md): a publication may not be named like one, or a device could
// not tell the two apart.
var reservedPublicationEvents = []string{
	CompactSubscribe, CompactSubscribed, CompactUnsubscribe, CompactUnsubscribed,
	CompactError, CompactSkipped, CompactSnapshot, CompactJoin, CompactLeave,
}

// NormalizePublicationEvent checks a publication's event name and returns it
// as stored: "" for the default ("" or "message"). A name is 1 to 64 bytes
// of letters, digits and _ - . : @ = ~ +, and not one of the compact
// protocol's control events (subscribe, subscribed, unsubscribe,
// unsubscribed, error, skipped, snapshot, join, leave). A bad name is a
// bad_request naming the field "event".
func NormalizePublicationEvent(name string) (string, error) {
	if name == "" || name == DefaultPublicationEvent {
		return "", nil
	}
	if len(name) > MaxPublicationEventLength {
		return "", FieldError("event", "longer than %d bytes", MaxPublicationEventLength)
	}
	for i := 0; i < len(name); i++ {
		if !eventByte(name[i]) {
			return "", FieldError("event", "invalid character at byte %d", i)
		}
	}
	for _, r := range reservedPublicationEvents {
		if name == r {
			return "", FieldError("event", "%q is reserved", name)
		}
	}
	return name, nil
}

// PublicationEvent returns the event name of a publication whose stored
// name is name: name itself, or "message" when it is empty.
func PublicationEvent(name string) string {
	if name == "" {
		return DefaultPublicationEvent
	}
	return name
}

func eventByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '_', '-', '.', ':', '@', '=', '~', '+':
		return true
	}
	return false
}
