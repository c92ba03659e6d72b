package e2e

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// proxy forwards TCP connections to a target until it is cut: then it drops
// every open connection and refuses new ones, as a database that went away.
// Frozen, it holds every byte without closing anything, as a database that
// stopped answering (a stalled disk, a paused VM, a lost route).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	frozen chan struct{} // while frozen: closed by thaw
	held   chan struct{} // while frozen: closed when the first byte is held
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
		p.thaw() // lets the held copies see their closed connections and end
	})
	return p
}

// via rewrites a database URL to go through the proxy.
func (p *proxy) via(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		if !down {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *proxy) pipe(c net.Conn) {
	up, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.forward(up, c); done <- struct{}{} }()
	go func() { p.forward(c, up); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = up.Close()
}

// forward copies src to dst, holding what it read while the proxy is frozen.
func (p *proxy) forward(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.waitThawed()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) waitThawed() {
	p.mu.Lock()
	frozen, held := p.frozen, p.held
	if frozen != nil {
		select {
		case <-held:
		default:
			close(held)
		}
	}
	p.mu.Unlock()
	if frozen != nil {
		<-frozen
	}
}

// freeze stops forwarding bytes, both ways, on every connection (new ones
// too), without closing any, until thaw. The channel it returns is closed
// when the first byte is held: a query is on its way and stuck.
func (p *proxy) freeze() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen, p.held = make(chan struct{}), make(chan struct{})
	}
	return p.held
}

func (p *proxy) thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen != nil {
		close(p.frozen)
		p.frozen = nil
	}
}

// cut drops every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
