package ws

// BinaryHandler is a Handler that also takes binary messages. A
// connection's binary messages reach OnBinary when its Handler is one and
// Config.MaxBinaryBytes is set; otherwise a binary message closes the
// connection with 1003, and one over MaxBinaryBytes with 1009.
type BinaryHandler interface {
	Handler
	// OnBinary is called with each complete binary message, in order with
	// the text messages, on the same goroutine as OnMessage. payload is
	// valid only during the call. It must not block.
	OnBinary(c *Conn, payload []byte)
}

// binaryLimit is the parser's binary limit for a connection handled by h.
func binaryLimit(cfg Config, h Handler) int32 {
	if _, ok := h.(BinaryHandler); !ok || cfg.MaxBinaryBytes <= 0 {
		return 0
	}
	return int32(min(cfg.MaxBinaryBytes, 1<<30))
}

// PrepareBinary returns a complete, unmasked binary frame carrying payload
// (a copy), to be queued with Conn.Send on one connection or many.
func PrepareBinary(payload []byte) []byte {
	return PrepareFrame(opBinary, payload)
}
