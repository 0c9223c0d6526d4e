//go:build linux

package main

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/internal/auth"
)

// The REST publish (POST /api/v1/channels/{topic}/publish) is served on the
// raw socket, without net/http: the acceptor answers a connection's first
// request, then the epoll reader parses the next ones of the keep-alive
// connection and writes each answer at once (one request in flight per
// connection, as HTTP/1.1 clients send them, so the socket always has room
// for it). Bodies need a Content-Length; chunked ones are refused.

const publishPrefix, publishSuffix = "/api/v1/channels/", "/publish"

// isPublish reports whether req is a REST publish.
func isPublish(req *request) bool {
	return req.method == "POST" && strings.HasPrefix(req.path, publishPrefix) && strings.HasSuffix(req.path, publishSuffix)
}

// acceptREST answers the first request on the blocking socket fd (buf[:n]
// holds its head, ending at end, and maybe more) and hands the connection
// to the epoll reader.
func (s *server) acceptREST(fd int, req request, buf []byte, n, end int) {
	if need := end + req.contentLength; need > n {
		if need > len(buf) {
			buf = append(make([]byte, 0, need), buf[:n]...)[:need]
		}
		for n < need {
			m, ok := readSome(fd, buf[n:need])
			if !ok {
				unix.Close(fd)
				return
			}
			n += m
		}
	}
	used, out, keep := s.restRequests(buf[:n], nil, false)
	if !writeAll(fd, out) || !keep {
		unix.Close(fd)
		return
	}
	c := &conn{fd: fd, id: s.nextID.Add(1), srv: s, rest: true}
	if used < n {
		c.in = bytes.Clone(buf[used:n])
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDWR|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return
	}
	s.register(c)
}

// readREST takes the bytes read from a REST connection: it answers the
// complete requests among them.
func (c *conn) readREST(data []byte) {
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	used, out, keep := c.srv.restRequests(data, nil, true)
	if len(out) > 0 {
		// Non-blocking, but the socket's buffer is empty: the client waits
		// for this answer before it sends the next request.
		if n, err := unix.Write(c.fd, out); err != nil || n < len(out) {
			keep = false
		}
	}
	if !keep {
		c.stopRead = true
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR) // the reader closes fd at the end it reports
		return
	}
	if used == len(data) {
		c.in = nil
		return
	}
	c.in = append(c.in[:0], data[used:]...)
}

// restRequests answers the complete requests at the start of b, appending
// the responses to out; used is what they took of b, keep false when the
// connection must close once out is written. fromReader: see published.
func (s *server) restRequests(b, out []byte, fromReader bool) (used int, _ []byte, keep bool) {
	for {
		end := bytes.Index(b[used:], []byte("\r\n\r\n"))
		if end < 0 {
			if len(b)-used > 8<<10 {
				return used, append(out, "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"...), false
			}
			return used, out, true
		}
		req, ok := parseHead(b[used : used+end+4])
		if !ok || req.chunked || req.contentLength < 0 || req.contentLength > maxFrameBytes {
			return used, restError(out, 400, "bad_request", "want a body of at most 64 KiB with a Content-Length"), false
		}
		size := end + 4 + req.contentLength
		if len(b)-used < size {
			return used, out, true
		}
		body := b[used+end+4 : used+size]
		used += size
		out = s.restPublish(out, &req, body, fromReader)
		if req.close {
			return used, out, false
		}
	}
}

// restPublish answers one request: Junction's REST publish (a bearer token
// with scope write, the body {"data": V}, the answer {"epoch","offset"}),
// or 404 for anything else.
func (s *server) restPublish(out []byte, req *request, body []byte, fromReader bool) []byte {
	if !isPublish(req) {
		return restError(out, 404, "not_found", "the reference server serves only the REST publish here")
	}
	topic := strings.TrimSuffix(strings.TrimPrefix(req.path, publishPrefix), publishSuffix)
	if strings.Contains(topic, "%") {
		var err error
		if topic, err = url.PathUnescape(topic); err != nil {
			return restError(out, 400, "bad_request", "topic: bad escape")
		}
	}
	if topic == "" || strings.Contains(topic, "/") {
		return restError(out, 404, "not_found", "no such route")
	}
	p, err := s.tokens.Verify(string(req.token))
	if err != nil {
		return restError(out, 401, "unauthorized", "invalid credential")
	}
	if !p.HasScope(auth.ScopeWrite) {
		return restError(out, 403, "forbidden", "publishing needs scope write")
	}
	data, ok := publishData(body)
	if !ok {
		return restError(out, 400, "bad_request", `want {"data": JSON value}`)
	}
	t := s.topic(topic)
	result := s.position(make([]byte, 0, 64), t.publish(data), false)
	s.published(t, fromReader)
	out = append(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(result)), 10)
	out = append(out, "\r\n\r\n"...)
	return append(out, result...)
}

// restError appends an error response with Junction's error body.
func restError(out []byte, status int, code, msg string) []byte {
	body := `{"error":{"code":"` + code + `","message":"` + msg + `","retryable":false}}`
	out = append(out, "HTTP/1.1 "+strconv.Itoa(status)+" "+statusText[status]+"\r\nContent-Type: application/json\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n\r\n"...)
	return append(out, body...)
}

var statusText = map[int]string{400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
