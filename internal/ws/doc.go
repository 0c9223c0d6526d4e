// Package ws is Junction's WebSocket transport: the server side of the
// opening handshake (ServerHandshake; the response can leave in one write
// with the first frames, see AttachOptions.Corked), RFC 6455 framing
// (masking through github.com/gobwas/ws), the read side (one parser fed by
// whatever reads the socket) and a batched, non-blocking write path.
//
// # Two implementations, one API
//
// Config.Kind selects how connections are served; Transport, Conn, Handler
// and their guarantees below are the same for both.
//
//   - Epoll (Linux, the default there): Config.Loops epoll loops,
//     Config.Writers writer goroutines and one heartbeat goroutine; no
//     goroutine per connection. An idle connection holds no goroutine, no
//     buffer and no timer: a loop reads every readable socket into its own
//     scratch buffer, and only a connection with an incomplete frame keeps
//     a private buffer until the frame is complete.
//   - Portable (everywhere; the only one off Linux): each connection has a
//     reader goroutine with a 4 KiB buffer, reading its net.Conn into the
//     same parser, and a writer goroutine that sleeps until frames are
//     queued (portable.go). The heartbeat goroutine is shared. Blocking
//     writes have a deadline (WriteTimeout) instead of waiting for EPOLLOUT.
//
// With Epoll, a connection's socket is a descriptor: one the transport owns
// outright (AttachFD, or UpgradeWith through an FDHijacker: the server's
// front door never makes a net.Conn of a WebSocket), or one borrowed from a
// net.Conn (Attach). Every system call on it holds a reference, and it is
// closed once the connection has finished and the last reference is dropped
// (sock.go). Portable works on a net.Conn only: UpgradeWith hijacks through
// http.Hijacker (the front door then makes a net.Conn of its descriptor)
// and AttachFD wraps the descriptor with net.FileConn.
//
// Outbound, a connection has a bounded queue of frames. A publication is
// framed once (PrepareText) and the same slice is queued to every
// subscriber (Conn.Send). A writer takes everything queued for a connection
// and writes it with one writev(2) (Portable: one net.Buffers write, writev
// on TCP). When the socket buffer is full the remainder waits for EPOLLOUT
// in the connection's loop; no goroutine waits (Portable: the connection's
// writer waits, up to WriteTimeout). Send never blocks: a queue that would
// overflow closes the connection with 4108 (slow consumer). The writers
// serve a connection made ready by Send (a reply, an event for one
// connection) before those a fan-out made ready with SendBatch, together
// with a share of those, so that a ping or an RPC reply does not wait behind
// a whole fan-out and a fan-out is never starved. A connection made ready
// by Send while an epoll loop is in a pass (mostly a reply made by a handler
// on that loop) wakes no writer: the loop writes it when its pass ends
// (loopwrite_linux.go), with raw system calls like its reads: a loop is
// one of the goroutines a fan-out must not starve, and one whose processor
// the scheduler handed away in mid-pass would wait for one again behind the
// writers. The writers' system calls go through the scheduler
// (unix.Syscall), they yield their processor after each batch, and when
// they are as many as the processors the last one writes only while a long
// backlog waits (Config.Writers): otherwise a
// processor they never hold polls the network at once, so HTTP publishers,
// RPC relays and handshakes are not starved by a fan-out.
//
// # Callbacks
//
// Handler.OnMessage runs on the goroutine reading the connection (its loop,
// or its Portable reader), serially per connection; Handler.OnClose runs
// exactly once, after the last OnMessage: with Epoll on the connection's
// loop, with Portable on its reader. Neither may block; both may call Send,
// SendText and Close.
//
// Text messages are delivered without UTF-8 validation: the JSON layer above
// rejects invalid input, and validating twice costs a pass over every byte.
//
// # Lock order
//
// See docs/LOCKORDER.md (every lock of the server, in one file).
package ws
