// Package stack runs the service from its built binaries on a database of
// its own, as an operator would: `server migrate up` creates and migrates
// it, `server create-api-key` makes a key, then the server and workers run
// until stopped. The programs that measure the service whole (bench/soak,
// bench/scale) start from it.
package stack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stack is a migrated database of the service's own and an API key on it,
// with the environment its binaries run with.
type Stack struct {
	// Name is the database's name.
	Name string
	// DBURL reaches the database.
	DBURL string
	// Key is the API key of the stack's user.
	Key string

	bin, serverURL string
	env            []string
}

// New creates database name on the PostgreSQL server serverURL and
// migrates it with the server binary of the directory bin, then makes an
// API key of user. The binaries it runs get this process's environment,
// the database, a free port, LOG_LEVEL=info and env (later entries win).
// Close drops the database; New drops it itself when it fails.
func New(ctx context.Context, bin, serverURL, name, user string, env ...string) (*Stack, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server url: %w", err)
	}
	u.Path = "/" + name
	s := &Stack{Name: name, DBURL: u.String(), bin: bin, serverURL: serverURL}
	s.env = append(append(os.Environ(), "DATABASE_URL="+s.DBURL, "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info"), env...)
	if out, err := s.command(ctx, "server", "migrate", "up").CombinedOutput(); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrate: %w: %s", err, out)
	}
	key, err := s.command(ctx, "server", "create-api-key", "-user", user).Output()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("create key: %w", err)
	}
	s.Key = strings.TrimSpace(string(key))
	return s, nil
}

// Close drops the database, whatever is still connected to it.
func (s *Stack) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.serverURL)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{s.Name}.Sanitize()+` WITH (FORCE)`)
}

func (s *Stack) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...) //nolint:gosec // our own binaries
	cmd.Env = s.env
	return cmd
}

// Process is a running binary of the stack.
type Process struct {
	// Cmd is the running command.
	Cmd *exec.Cmd
	// Addr is the address of its <name>_started line (the server's).
	Addr    string
	drained sync.WaitGroup // the log read to its end
}

// Start runs the binary name ("server", "worker") and returns once it has
// logged <name>_started. Each later line of its log goes to onLine (nil:
// discarded), which must be safe for the lines of several processes.
func (s *Stack) Start(ctx context.Context, name string, onLine func([]byte)) (*Process, error) {
	p := &Process{Cmd: s.command(ctx, name)}
	stdout, err := p.Cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	rd := bufio.NewReaderSize(stdout, 1<<16)
	for {
		line, err := rd.ReadBytes('\n')
		if err != nil {
			_ = p.Cmd.Wait()
			return nil, fmt.Errorf("%s ended before it started", name)
		}
		var m map[string]any
		_ = json.Unmarshal(line, &m)
		if m["event"] != name+"_started" {
			continue
		}
		p.Addr, _ = m["addr"].(string)
		p.drained.Go(func() {
			if onLine == nil {
				_, _ = io.Copy(io.Discard, rd)
				return
			}
			for {
				line, err := rd.ReadBytes('\n')
				if len(line) > 0 {
					onLine(line)
				}
				if err != nil {
					return
				}
			}
		})
		return p, nil
	}
}

// Stop ends the process with SIGTERM and reads its log to the end before
// reaping it: Wait closes the pipe, and would lose what is still in it.
// Stopping a stopped process does nothing.
func (p *Process) Stop() {
	if p.Cmd.ProcessState != nil {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	p.drained.Wait()
	_ = p.Cmd.Wait()
}

// Client calls the API of a stack's server with its key.
type Client struct {
	// Base is the server's URL, http://host:port.
	Base string
	// Key is the API key sent as a bearer token.
	Key string
}

// Client is a client of the server p with the stack's key.
func (s *Stack) Client(p *Process) Client {
	return Client{Base: "http://" + p.Addr, Key: s.Key}
}

// Call sends body (nil: none) as JSON and returns the JSON object
// answered. want is the status required; 0 takes any status and any
// answer, returning what of it decodes, for load that only has to be sent.
func (c Client) Call(ctx context.Context, method, path string, body any, want int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	if want == 0 {
		_ = json.Unmarshal(raw, &out)
		return out, nil
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d: %s", method, path, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return out, nil
}
