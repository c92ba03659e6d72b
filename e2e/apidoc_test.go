package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	apidoc "github.com/backtestd/backtestd/api"
)

// apiDoc is the API's document for consumers, whose examples are run here.
const apiDoc = "../docs/api.md"

// docExample is a ```sh block of docs/api.md and what the document says it
// prints: the block right after it, when only blank lines part them and it
// is a json, http or text block.
type docExample struct {
	id     string
	notRun string // why the block is not run; empty for the others
	line   int    // of the block's first line, for messages
	script string
	output *docOutput
}

type docOutput struct {
	lang, text string
}

var (
	exampleMark = regexp.MustCompile(`^<!-- example: ([a-z0-9-]+) -->$`)
	notRunMark  = regexp.MustCompile(`^<!-- not run: (.+) -->$`)
)

// parseExamples returns the ```sh blocks of a Markdown document. Every one
// must be marked, on the line before its fence, as an example with an ID or
// as not run with a reason, so that no block escapes the test unseen; blocks
// in another shell's language would escape it, and are refused.
func parseExamples(doc string) ([]docExample, error) {
	type fence struct {
		lang, text, before string
		line, endLine      int
	}
	var fences []fence
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		open, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		f := fence{lang: strings.TrimSpace(open), line: i + 2}
		for j := i - 1; j >= 0; j-- {
			if strings.TrimSpace(lines[j]) != "" {
				f.before = strings.TrimSpace(lines[j])
				break
			}
		}
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("line %d: a block that is never closed", f.line-1)
		}
		f.text, f.endLine = strings.Join(body, "\n")+"\n", i+1
		fences = append(fences, f)
	}
	var out []docExample
	ids := map[string]bool{}
	for k, f := range fences {
		switch f.lang {
		case "sh":
		case "bash", "shell", "console", "zsh":
			return nil, fmt.Errorf("line %d: a ```%s block; examples are ```sh, so that they are run", f.line, f.lang)
		default:
			continue
		}
		ex := docExample{line: f.line, script: f.text}
		if m := exampleMark.FindStringSubmatch(f.before); m != nil {
			ex.id = m[1]
		} else if m := notRunMark.FindStringSubmatch(f.before); m != nil {
			ex.id, ex.notRun = fmt.Sprintf("line-%d", f.line), strings.TrimSpace(m[1])
		} else {
			return nil, fmt.Errorf("line %d: a ```sh block without <!-- example: ID --> or <!-- not run: why --> before it", f.line)
		}
		if ids[ex.id] {
			return nil, fmt.Errorf("line %d: example %s twice", f.line, ex.id)
		}
		ids[ex.id] = true
		if k+1 < len(fences) {
			next := fences[k+1]
			between := strings.Join(lines[f.endLine:next.line-2], "")
			if strings.TrimSpace(between) == "" && slices.Contains([]string{"json", "http", "text"}, next.lang) {
				ex.output = &docOutput{lang: next.lang, text: next.text}
			}
		}
		out = append(out, ex)
	}
	return out, nil
}

// outputMatcher compares what an example printed with what the document
// shows, across the whole document: IDs and cursors differ from one server
// to the next, but the same ID in two places of the document must be the
// same ID in the output, and two different ones must differ. Times match
// any time. Everything else must be as shown.
type outputMatcher struct {
	bound map[string]string // "uuid:"+shown, "cursor:"+shown -> printed
	taken map[string]string // "uuid:"+printed, "cursor:"+printed -> shown
}

func newOutputMatcher() *outputMatcher {
	return &outputMatcher{bound: map[string]string{}, taken: map[string]string{}}
}

const (
	uuidPattern = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`
	timePattern = `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})`
	// A cursor in a URL; a next_cursor field is one by its name.
	cursorPattern = `cursor=[A-Za-z0-9_-]+`
)

var (
	volatile = regexp.MustCompile(uuidPattern + "|" + timePattern + "|" + cursorPattern)
	isUUID   = regexp.MustCompile("^" + uuidPattern + "$")
)

// unusedHeaders are the headers of every response that an example need not
// show: any other header a response has must be in the document.
var unusedHeaders = []string{"Date", "Content-Length", "X-Content-Type-Options", "X-Correlation-Id"}

func (m *outputMatcher) bind(kind, shown, printed string) error {
	if prev, ok := m.bound[kind+":"+shown]; ok && prev != printed {
		return fmt.Errorf("the document shows %s %s where it showed it before, but the server printed %s, not %s", kind, shown, printed, prev)
	}
	if prev, ok := m.taken[kind+":"+printed]; ok && prev != shown {
		return fmt.Errorf("the server printed %s %s, which the document showed as %s before, not %s", kind, printed, prev, shown)
	}
	m.bound[kind+":"+shown], m.taken[kind+":"+printed] = printed, shown
	return nil
}

// str compares a printed string with a shown one.
func (m *outputMatcher) str(shown, printed string) error {
	var (
		pattern strings.Builder
		kinds   []string
		values  []string
		last    int
	)
	pattern.WriteString("^")
	for _, loc := range volatile.FindAllStringIndex(shown, -1) {
		pattern.WriteString(regexp.QuoteMeta(shown[last:loc[0]]))
		tok := shown[loc[0]:loc[1]]
		switch {
		case strings.HasPrefix(tok, "cursor="):
			pattern.WriteString("cursor=([A-Za-z0-9_-]+)")
			kinds, values = append(kinds, "cursor"), append(values, strings.TrimPrefix(tok, "cursor="))
		case isUUID.MatchString(tok):
			pattern.WriteString("(" + uuidPattern + ")")
			kinds, values = append(kinds, "uuid"), append(values, tok)
		default:
			pattern.WriteString(timePattern)
		}
		last = loc[1]
	}
	pattern.WriteString(regexp.QuoteMeta(shown[last:]) + "$")
	got := regexp.MustCompile(pattern.String()).FindStringSubmatch(printed)
	if got == nil {
		return fmt.Errorf("shown %q, printed %q", shown, printed)
	}
	for i, kind := range kinds {
		if err := m.bind(kind, values[i], got[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// value compares printed JSON with shown JSON, at path.
func (m *outputMatcher) value(path string, shown, printed any) error {
	switch s := shown.(type) {
	case map[string]any:
		p, ok := printed.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: shown an object, printed %v", path, printed)
		}
		if ks, kp := sortedKeys(s), sortedKeys(p); !slices.Equal(ks, kp) {
			return fmt.Errorf("%s: shown the fields %v, printed %v", path, ks, kp)
		}
		for _, k := range sortedKeys(s) {
			sv, isStr := s[k].(string)
			pv, printedStr := p[k].(string)
			if k == "next_cursor" && isStr && printedStr {
				if err := m.bind("cursor", sv, pv); err != nil {
					return fmt.Errorf("%s.%s: %w", path, k, err)
				}
				continue
			}
			if err := m.value(path+"."+k, s[k], p[k]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		p, ok := printed.([]any)
		if !ok || len(p) != len(s) {
			return fmt.Errorf("%s: shown %d items, printed %v", path, len(s), printed)
		}
		for i := range s {
			if err := m.value(fmt.Sprintf("%s[%d]", path, i), s[i], p[i]); err != nil {
				return err
			}
		}
		return nil
	case string:
		p, ok := printed.(string)
		if !ok {
			return fmt.Errorf("%s: shown %q, printed %v", path, s, printed)
		}
		if err := m.str(s, p); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	default: // numbers, booleans, null: as shown
		if !reflect.DeepEqual(shown, printed) {
			return fmt.Errorf("%s: shown %v, printed %v", path, shown, printed)
		}
		return nil
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// jsonValues decodes a stream of JSON values, as jq prints them.
func jsonValues(text string) ([]any, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	var out []any
	for {
		var v any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
		out = append(out, v)
	}
}

func (m *outputMatcher) jsonStream(shown, printed string) error {
	s, err := jsonValues(shown)
	if err != nil {
		return fmt.Errorf("the document's output: %w", err)
	}
	p, err := jsonValues(printed)
	if err != nil {
		return fmt.Errorf("the example's output: %w", err)
	}
	if len(s) != len(p) {
		return fmt.Errorf("shown %d JSON values, printed %d", len(s), len(p))
	}
	for i := range s {
		if err := m.value(fmt.Sprintf("value %d", i+1), s[i], p[i]); err != nil {
			return err
		}
	}
	return nil
}

func (m *outputMatcher) text(shown, printed string) error {
	s := strings.Split(strings.TrimRight(shown, "\n"), "\n")
	p := strings.Split(strings.TrimRight(printed, "\n"), "\n")
	if len(s) != len(p) {
		return fmt.Errorf("shown %d lines, printed %d", len(s), len(p))
	}
	for i := range s {
		if err := m.str(s[i], p[i]); err != nil {
			return fmt.Errorf("line %d: %w", i+1, err)
		}
	}
	return nil
}

var responseStart = regexp.MustCompile(`(?m)^HTTP/`)

// splitResponses cuts what `curl -i` printed into its responses: status
// line, headers, and the body (JSON) or nothing.
func splitResponses(text string) []string {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	starts := responseStart.FindAllStringIndex(text, -1)
	var out []string
	for i, s := range starts {
		end := len(text)
		if i+1 < len(starts) {
			end = starts[i+1][0]
		}
		out = append(out, text[s[0]:end])
	}
	return out
}

// http compares responses as `curl -i` prints them: the status line as
// shown, every header shown (and no other but unusedHeaders), the body as
// JSON.
func (m *outputMatcher) http(shown, printed string) error {
	s, p := splitResponses(shown), splitResponses(printed)
	if len(s) != len(p) || len(s) == 0 {
		return fmt.Errorf("shown %d responses, printed %d", len(s), len(p))
	}
	for i := range s {
		if err := m.response(s[i], p[i]); err != nil {
			return fmt.Errorf("response %d: %w", i+1, err)
		}
	}
	return nil
}

func (m *outputMatcher) response(shown, printed string) error {
	sHead, sBody, _ := strings.Cut(shown, "\n\n")
	pHead, pBody, _ := strings.Cut(printed, "\n\n")
	sHead, pHead = strings.TrimRight(sHead, "\n"), strings.TrimRight(pHead, "\n")
	switch {
	case strings.TrimSpace(sBody) == "" && strings.TrimSpace(pBody) != "":
		return fmt.Errorf("shown no body, printed %q", pBody)
	case strings.TrimSpace(sBody) != "":
		if err := m.jsonStream(sBody, pBody); err != nil {
			return fmt.Errorf("body: %w", err)
		}
	}
	sLines, pLines := strings.Split(sHead, "\n"), strings.Split(pHead, "\n")
	if sLines[0] != pLines[0] {
		return fmt.Errorf("shown %q, printed %q", sLines[0], pLines[0])
	}
	headers := func(lines []string) (map[string]string, error) {
		h := map[string]string{}
		for _, l := range lines {
			name, value, ok := strings.Cut(l, ":")
			if !ok {
				return nil, fmt.Errorf("not a header: %q", l)
			}
			h[http.CanonicalHeaderKey(name)] = strings.TrimSpace(value)
		}
		return h, nil
	}
	sh, err := headers(sLines[1:])
	if err != nil {
		return fmt.Errorf("the document's output: %w", err)
	}
	ph, err := headers(pLines[1:])
	if err != nil {
		return err
	}
	for _, name := range sortedKeys(sh) {
		pv, ok := ph[name]
		if !ok {
			return fmt.Errorf("shown header %s, not printed", name)
		}
		if err := m.str(sh[name], pv); err != nil {
			return fmt.Errorf("header %s: %w", name, err)
		}
	}
	for _, name := range sortedKeys(ph) {
		if _, ok := sh[name]; !ok && !slices.Contains(unusedHeaders, name) {
			return fmt.Errorf("printed header %s: %s, not shown", name, ph[name])
		}
	}
	return nil
}

// check compares an example's output with what the document shows after
// it; an example the document shows no output of must print nothing.
func (m *outputMatcher) check(ex docExample, printed string) error {
	if ex.output == nil {
		if printed != "" {
			return errors.New("the document shows no output, but the example printed some")
		}
		return nil
	}
	switch ex.output.lang {
	case "json":
		return m.jsonStream(ex.output.text, printed)
	case "http":
		return m.http(ex.output.text, printed)
	default:
		return m.text(ex.output.text, printed)
	}
}

// docShell is one bash running the examples in order, so that what one
// sets (RUN=...) the next uses. Each example runs from a file of its own,
// with its output in files of its own, and says when it is done.
type docShell struct {
	dir   string
	stdin io.WriteCloser
	done  chan string // the examples' numbers, as each ends
	exit  chan error
}

func startDocShell(t *testing.T, dir string, env []string) *docShell {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	// The examples' curl, jq and sleep end with the shell, when a failed
	// test ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	sh := &docShell{dir: dir, stdin: stdin, done: make(chan string), exit: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			sh.done <- sc.Text()
		}
		close(sh.done)
		sh.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		for range sh.done { // until bash has exited
		}
	})
	// Strict, as a reader's script should be: a failing command, a failing
	// part of a pipe or an unset variable ends the shell, and the test.
	_, err = io.WriteString(stdin, "set -euo pipefail\n")
	require.NoError(t, err)
	return sh
}

// run runs one example, the nth, and returns what it printed on stdout and
// stderr; where names it in messages.
func (sh *docShell) run(t *testing.T, n int, where, script string) (stdout, stderr string) {
	t.Helper()
	name := fmt.Sprintf("%02d", n)
	require.NoError(t, os.WriteFile(filepath.Join(sh.dir, name+".sh"), []byte(script), 0o600))
	_, err := fmt.Fprintf(sh.stdin, "source ./%[1]s.sh </dev/null >%[1]s.out 2>%[1]s.err\necho %[1]s\n", name)
	require.NoError(t, err)
	read := func(ext string) string {
		b, _ := os.ReadFile(filepath.Join(sh.dir, name+ext)) //nolint:errcheck // absent: it printed nothing
		return string(b)
	}
	select {
	case got, ok := <-sh.done:
		if !ok {
			err := <-sh.exit
			t.Fatalf("%s failed: the shell ended (%v)\nstdout:\n%s\nstderr:\n%s", where, err, read(".out"), read(".err"))
		}
		require.Equal(t, name, got)
	case <-time.After(3 * time.Minute): // a safety net for a loop that never ends, not a measure
		t.Fatalf("%s did not end\nstdout:\n%s\nstderr:\n%s", where, read(".out"), read(".err"))
	}
	return read(".out"), read(".err")
}

// docArrangement makes the live server show what an example shows where
// that depends on timing a reader does not control: backtests here take a
// fraction of a second.
type docArrangement struct {
	before  func(t *testing.T)
	rewrite func(t *testing.T, script string) string
}

// replaceOnce replaces old, which the script must contain once, with repl.
func replaceOnce(t *testing.T, script, old, repl string) string {
	t.Helper()
	require.Equal(t, 1, strings.Count(script, old), "the example has %q once", old)
	return strings.Replace(script, old, repl, 1)
}

// Every ```sh block of docs/api.md runs, in order, in one bash with curl
// and jq, against the server and worker binaries, through a proxy that
// holds every exchange to the OpenAPI document; each prints what the
// document shows after it.
func TestAPIDocExamplesRunAsShown(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the examples of docs/api.md need %s", tool)
	}
	doc, err := os.ReadFile(apiDoc)
	require.NoError(t, err)
	examples, err := parseExamples(string(doc))
	require.NoError(t, err)
	var notRun []string
	for _, ex := range examples {
		if ex.notRun != "" {
			notRun = append(notRun, fmt.Sprintf("line %d: %s", ex.line, ex.notRun))
		}
	}
	require.GreaterOrEqual(t, len(examples), 20, "docs/api.md has its examples, and this test finds them")
	require.LessOrEqual(t, len(notRun)*10, len(examples), "at most one example in ten is not run: %v", notRun)

	// HANG (fault injection) is a backtest that runs until it is cancelled.
	st := newStack(t, "FAULT_INJECTION=1")
	target, err := url.Parse(st.api.base)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = checkedTransport(t, nil)
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	arrangements := map[string]docArrangement{
		// The server is this test's; the key is made as the document says.
		"setup": {rewrite: func(t *testing.T, s string) string {
			t.Helper()
			return replaceOnce(t, s, "API=http://localhost:8080\n", "API="+front.URL+"\n")
		}},
		// A long backtest, still running when it is cancelled.
		"cancel-running": {rewrite: func(t *testing.T, s string) string {
			t.Helper()
			return replaceOnce(t, s, `symbol: "ACME"`, `symbol: "HANG"`)
		}},
		// A run no worker has taken yet: there is no worker from here on.
		"cancel-queued": {before: func(t *testing.T) {
			t.Helper()
			st.worker.stop(t)
		}},
	}

	dir := t.TempDir()
	require.NoError(t, os.Symlink(binDir, filepath.Join(dir, "bin")))
	sh := startDocShell(t, dir, []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DATABASE_URL=" + st.dbURL,
		goraceEnv(), // the race detector's sleep at exit, for bin/server, as binary() has it
	})
	m := newOutputMatcher()
	used := map[string]bool{}
	for n, ex := range examples {
		if ex.notRun != "" {
			continue
		}
		script := ex.script
		if a, ok := arrangements[ex.id]; ok {
			used[ex.id] = true
			if a.before != nil {
				a.before(t)
			}
			if a.rewrite != nil {
				script = a.rewrite(t, script)
			}
		}
		where := fmt.Sprintf("docs/api.md:%d, example %s", ex.line, ex.id)
		stdout, stderr := sh.run(t, n, where, script)
		if err := m.check(ex, stdout); err != nil {
			t.Fatalf("%s: %v\nit printed:\n%s\nstderr:\n%s", where, err, stdout, stderr)
		}
	}
	for id := range arrangements {
		require.True(t, used[id], "docs/api.md has the example %s this test arranges", id)
	}
}

// The comparison of outputs fails on what a broken example would print.
func TestAPIDocOutputMatcher(t *testing.T) {
	t.Parallel()
	const (
		idA = "01a2175f-386b-7761-8b43-c03581273143"
		idB = "01a2175f-386b-7761-8b43-c03581273144"
		idC = "01a22800-0000-7000-8000-000000000001"
	)
	tests := []struct {
		name          string
		lang          string
		shown         string
		printed       string
		wantErr       string
		beforePrinted string // what an earlier example printed for the shown idA
	}{
		{name: "same", lang: "json", shown: `{"status": "queued", "id": "` + idA + `"}`, printed: `{"id":"` + idC + `","status":"queued"}`},
		{name: "another value", lang: "json", shown: `{"status": "queued"}`, printed: `{"status":"running"}`, wantErr: `shown "queued", printed "running"`},
		{name: "a number", lang: "json", shown: `{"trades": 28}`, printed: `{"trades":27}`, wantErr: "shown 28, printed 27"},
		{name: "a field more", lang: "json", shown: `{"a": 1}`, printed: `{"a":1,"b":2}`, wantErr: "shown the fields [a], printed [a b]"},
		{name: "times match times", lang: "json", shown: `{"at": "2026-01-02T03:04:05.123456Z"}`, printed: `{"at":"2027-11-29T15:42:13.4Z"}`},
		{name: "a time is no null", lang: "json", shown: `{"at": "2026-01-02T03:04:05Z"}`, printed: `{"at":null}`, wantErr: "printed <nil>"},
		{name: "one ID shown twice is one ID", lang: "json", shown: `{"a": "` + idA + `", "b": "` + idA + `"}`, printed: `{"a":"` + idB + `","b":"` + idC + `"}`, wantErr: "the document shows uuid"},
		{name: "two IDs shown are two", lang: "json", shown: `{"a": "` + idA + `", "b": "` + idB + `"}`, printed: `{"a":"` + idC + `","b":"` + idC + `"}`, wantErr: "the server printed uuid"},
		{name: "IDs hold across examples", lang: "text", shown: idA, beforePrinted: idC, printed: idB, wantErr: "the document shows uuid"},
		{name: "lines", lang: "text", shown: "204\n404\n", printed: "204\n", wantErr: "shown 2 lines, printed 1"},
		{
			name: "headers", lang: "http",
			shown:   "HTTP/1.1 202 Accepted\nLocation: /backtests/" + idA + "\n\n{\"run_id\": \"" + idA + "\"}",
			printed: "HTTP/1.1 202 Accepted\r\nLocation: /backtests/" + idC + "\r\nDate: x\r\nX-Correlation-Id: y\r\n\r\n{\"run_id\":\"" + idC + "\"}\n",
		},
		{
			name: "a header not shown", lang: "http",
			shown:   "HTTP/1.1 202 Accepted\n\n{}",
			printed: "HTTP/1.1 202 Accepted\r\nIdempotent-Replayed: true\r\n\r\n{}\n",
			wantErr: "printed header Idempotent-Replayed: true, not shown",
		},
		{
			name: "another status", lang: "http",
			shown:   "HTTP/1.1 409 Conflict\n\n{}",
			printed: "HTTP/1.1 200 OK\r\n\r\n{}\n",
			wantErr: `shown "HTTP/1.1 409 Conflict", printed "HTTP/1.1 200 OK"`,
		},
		{
			name: "cursors", lang: "http",
			shown:   "HTTP/1.1 200 OK\nLink: </backtests?cursor=abc&limit=2>; rel=\"next\"\n\n{\"next_cursor\": \"abc\"}",
			printed: "HTTP/1.1 200 OK\r\nLink: </backtests?cursor=XYZ&limit=2>; rel=\"next\"\r\n\r\n{\"next_cursor\":\"XYZ-other\"}\n",
			wantErr: "the document shows cursor abc where it showed it before",
		},
		{name: "no output shown", lang: "", printed: "something\n", wantErr: "the document shows no output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newOutputMatcher()
			if tt.beforePrinted != "" {
				require.NoError(t, m.check(docExample{output: &docOutput{lang: "text", text: idA}}, tt.beforePrinted))
			}
			ex := docExample{id: "x"}
			if tt.lang != "" {
				ex.output = &docOutput{lang: tt.lang, text: tt.shown}
			}
			err := m.check(ex, tt.printed)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

// Every ```sh block is marked, and each knows its output.
func TestAPIDocExamplesAreMarked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, wantErr string
		wantIDs            []string
		wantOutput         []string
	}{
		{
			name:       "marked, with and without output",
			doc:        "<!-- example: a -->\n```sh\necho 1\n```\n\n```text\n1\n```\n\n<!-- example: b -->\n```sh\nX=1\n```\n\nprose\n\n```json\n{}\n```\n",
			wantIDs:    []string{"a", "b"},
			wantOutput: []string{"text", ""},
		},
		{name: "unmarked", doc: "```sh\necho 1\n```\n", wantErr: "without <!-- example: ID -->"},
		{name: "bash escapes", doc: "```bash\necho 1\n```\n", wantErr: "a ```bash block"},
		{name: "twice", doc: "<!-- example: a -->\n```sh\n```\n<!-- example: a -->\n```sh\n```\n", wantErr: "example a twice"},
		{name: "not run", doc: "<!-- not run: it needs a browser -->\n```sh\nopen x\n```\n", wantIDs: []string{"line-3"}, wantOutput: []string{""}},
		{name: "unclosed", doc: "<!-- example: a -->\n```sh\necho\n", wantErr: "never closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseExamples(tt.doc)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var ids, outputs []string
			for _, ex := range got {
				ids = append(ids, ex.id)
				lang := ""
				if ex.output != nil {
					lang = ex.output.lang
				}
				outputs = append(outputs, lang)
			}
			require.Equal(t, tt.wantIDs, ids)
			require.Equal(t, tt.wantOutput, outputs)
		})
	}
}

// docs/api.md lists the error codes and the kinds of problem of the OpenAPI
// document, no more, no fewer.
func TestAPIDocListsTheDocumentsCodes(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(apiDoc)
	require.NoError(t, err)
	var openapi struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(apidoc.JSON(), &openapi))
	tests := []struct{ section, schema string }{
		{"### Error codes", "ErrorCode"},
		{"## Errors", "ProblemKind"},
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|")
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			t.Parallel()
			_, section, ok := strings.Cut(string(doc), "\n"+tt.section+"\n")
			require.True(t, ok, "docs/api.md has %q", tt.section)
			section, _, _ = strings.Cut(section, "\n## ")
			var listed []string
			for _, m := range row.FindAllStringSubmatch(section, -1) {
				listed = append(listed, m[1])
			}
			require.ElementsMatch(t, openapi.Components.Schemas[tt.schema].Enum, listed)
		})
	}
}
