// Package loadgen is the client side of the HTTP benchmarks: one keep-alive
// HTTP/1.1 connection that sends a request prepared once and reads each
// response just far enough to check its status and skip its body.
//
// It exists because net/http's client costs about as much CPU per request
// as the server it measures. On a small machine that shares its cores
// between the load and the server, that cost would be charged to the server.
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Conn is one keep-alive connection to a server.
type Conn struct {
	c  net.Conn
	br *bufio.Reader
}

// Dial connects to addr (host:port).
func Dial(ctx context.Context, addr string) (*Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return &Conn{c: c, br: bufio.NewReader(c)}, nil
}

// Request renders an HTTP/1.1 request once, for Conn.Do to send many times.
// header holds "Name: value" lines.
func Request(method, path string, header []string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: loadgen\r\n", method, path)
	for _, h := range header {
		b.WriteString(h + "\r\n")
	}
	if body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// Do sends req and reads the response, which must carry a Content-Length
// (net/http sets one on small bodies). It returns the status code.
func (c *Conn) Do(req []byte) (int, error) {
	if _, err := c.c.Write(req); err != nil {
		return 0, fmt.Errorf("write request: %w", err)
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, fmt.Errorf("read status line: %w", err)
	}
	_, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(rest) < 3 {
		return 0, fmt.Errorf("status line %q", bytes.TrimSpace(line))
	}
	status, err := strconv.Atoi(string(rest[:3]))
	if err != nil {
		return 0, fmt.Errorf("status line %q: %w", bytes.TrimSpace(line), err)
	}
	length := -1
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, fmt.Errorf("read header: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, fmt.Errorf("content length %q: %w", v, err)
			}
		}
	}
	if length < 0 {
		return 0, errors.New("response without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	return status, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }
