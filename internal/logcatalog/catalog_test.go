package logcatalog_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/logcatalog"
	"github.com/backtestd/backtestd/internal/obs"
)

// logMethods maps slog.Logger's logging methods to the index of their
// message argument.
var logMethods = map[string]int{
	"DebugContext": 1, "InfoContext": 1, "WarnContext": 1, "ErrorContext": 1,
	"Debug": 0, "Info": 0, "Warn": 0, "Error": 0,
	"Log": 2, "LogAttrs": 2,
}

// TestLogCallsUseCatalogEvents keeps event names in the catalog: every
// logging call in the service's code passes an obs.Event* constant as its
// message, never a literal or a computed string, and that constant has its
// entry in logcatalog.Events.
func TestLogCallsUseCatalogEvents(t *testing.T) {
	t.Parallel()
	consts := constants(t)
	calls := 0
	err := walkCode(t, func(fset *token.FileSet, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			idx, ok := logMethods[sel.Sel.Name]
			if !ok || !looksLikeLogger(sel.X) || len(call.Args) <= idx {
				return true
			}
			calls++
			msg, ok := call.Args[idx].(*ast.SelectorExpr)
			pkg, _ := ast.Unparen(msgX(msg)).(*ast.Ident)
			require.True(t, ok && pkg != nil && pkg.Name == "obs" && strings.HasPrefix(msg.Sel.Name, "Event"),
				"%s: %s's message must be an obs.Event* constant", fset.Position(call.Pos()), sel.Sel.Name)
			value, known := consts[msg.Sel.Name]
			require.True(t, known, "%s: obs.%s is not a constant of internal/obs", fset.Position(call.Pos()), msg.Sel.Name)
			_, listed := logcatalog.LookupEvent(value)
			require.True(t, listed, "%s: obs.%s (%s) has no entry in logcatalog.Events (internal/logcatalog/events.go)",
				fset.Position(call.Pos()), msg.Sel.Name, value)
			return true
		})
	})
	require.NoError(t, err)
	require.Greater(t, calls, 20, "the walk must have found the service's logging calls")
}

// walkCode parses every non-test Go file of the module.
func walkCode(t *testing.T, fn func(*token.FileSet, *ast.File)) error {
	t.Helper()
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		fn(fset, f)
		return nil
	})
}

func msgX(s *ast.SelectorExpr) ast.Expr {
	if s == nil {
		return nil
	}
	return s.X
}

// looksLikeLogger matches the receivers the service logs through: logger,
// l.logger, w.logger and the like (not errors.Is or t.Log).
func looksLikeLogger(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return strings.Contains(strings.ToLower(x.Name), "logger")
	case *ast.SelectorExpr:
		return strings.Contains(strings.ToLower(x.Sel.Name), "logger")
	default:
		return false
	}
}

// The catalog is written once, in logcatalog.Events and logcatalog.Keys: the Event and
// Key constants each have their entry there, every event is emitted and
// every key used by the service's code, and docs/log-schema.json and the
// events table of docs/logging.md are what go generate makes of it.
func TestEventCatalogMatchesTheDocs(t *testing.T) {
	t.Parallel()
	consts := constants(t)
	used := usedNames(t)

	listed := map[string]bool{}
	for _, e := range logcatalog.Events {
		require.False(t, listed[e.Name], "%s is in logcatalog.Events twice", e.Name)
		listed[e.Name] = true
	}
	keys := map[string]bool{}
	for _, k := range logcatalog.Keys {
		require.False(t, keys[k.Name], "%s is in logcatalog.Keys twice", k.Name)
		keys[k.Name] = true
	}
	constEvents, constKeys := map[string]bool{}, map[string]bool{}
	for name, value := range consts {
		switch {
		case strings.HasPrefix(name, "Event"):
			constEvents[value] = true
			require.True(t, listed[value], "obs.%s (%s) has no entry in logcatalog.Events", name, value)
			require.True(t, used[name], "obs.%s (%s) is never emitted by the service's code", name, value)
		case strings.HasPrefix(name, "Key"):
			constKeys[value] = true
			require.True(t, keys[value], "obs.%s (%s) has no entry in logcatalog.Keys", name, value)
			require.True(t, used[name], "obs.%s (%s) is used nowhere in the service's code: remove it", name, value)
		}
	}
	require.Equal(t, sortedKeys(constEvents), sortedKeys(listed), "logcatalog.Events lists an event without its Event constant")
	require.Equal(t, sortedKeys(constKeys), sortedKeys(keys), "logcatalog.Keys lists a key without its Key constant")

	schema, err := logcatalog.Schema()
	require.NoError(t, err)
	requireFresh(t, logcatalog.SchemaPath, schema)
	doc, err := os.ReadFile(filepath.Join("..", "..", logcatalog.LoggingPath))
	require.NoError(t, err)
	fresh, err := logcatalog.Logging(doc)
	require.NoError(t, err)
	requireFresh(t, logcatalog.LoggingPath, fresh)
	require.Equal(t, sortedKeys(listed), sortedKeys(documentedEvents(t)), "docs/logging.md's events table and logcatalog.Events differ")
}

// requireFresh fails when the file at path is not want, the document the
// catalog makes.
func requireFresh(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join("..", "..", path))
	require.NoError(t, err)
	if bytes.Equal(got, want) {
		return
	}
	gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	line := 0
	for line < min(len(gotLines), len(wantLines)) && gotLines[line] == wantLines[line] {
		line++
	}
	// The differing line and the two before it, which place it.
	at := func(lines []string) string {
		from, to := max(line-2, 0), min(line+1, len(lines))
		if from >= to {
			return "\t(end of file)"
		}
		return "\t" + strings.Join(lines[from:to], "\n\t")
	}
	t.Fatalf("%s is stale: it is not what the catalog (internal/logcatalog) makes of it.\n"+
		"Up to line %d it reads\n%s\nand should read\n%s\nRun %s.", path, line+1, at(gotLines), at(wantLines), logcatalog.Fix)
}

// TestCatalogEntriesAreComplete checks what the generated documents cannot:
// every event names its services, levels and keys, from logcatalog.Keys, once.
func TestCatalogEntriesAreComplete(t *testing.T) {
	t.Parallel()
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, e := range logcatalog.Events {
		require.NotEmpty(t, e.Services, "%s: services", e.Name)
		require.NotEmpty(t, e.Levels, "%s: levels", e.Name)
		require.NotEmpty(t, e.When, "%s: when", e.Name)
		scopeRequired, scopeOptional := e.Scope.Keys()
		from := map[string]string{} // key -> the list that names it
		for _, k := range scopeOptional {
			from[k] = "scope optional"
		}
		for _, list := range []struct {
			name string
			keys []string
		}{{"scope", scopeRequired}, {"required", e.Required}, {"required at error", e.RequiredAtError}, {"optional", e.Optional}} {
			for _, k := range list.keys {
				_, known := logcatalog.LookupKey(k)
				require.True(t, known, "%s: key %s has no entry in logcatalog.Keys", e.Name, k)
				require.NotContains(t, logcatalog.HeaderKeys(), k, "%s: %s is on every line already", e.Name, k)
				// An event may require a key that its scope has on some lines only.
				prev, dup := from[k]
				require.True(t, !dup || prev == "scope optional" && list.name == "required",
					"%s: key %s is both %s and %s (scope %q)", e.Name, k, prev, list.name, e.Scope)
				from[k] = list.name
			}
		}
		for k := range e.Notes {
			require.Contains(t, from, k, "%s: a note on %s, which it does not carry", e.Name, k)
		}
		for _, l := range e.Levels {
			require.Contains(t, levels, l, "%s", e.Name)
		}
		if e.Library {
			require.Contains(t, e.Required, obs.KeyMessage, "%s: a library's text", e.Name)
		}
		if len(e.RequiredAtError) > 0 {
			require.Contains(t, e.Levels, slog.LevelError, "%s: keys at error level, which it is never written at", e.Name)
		}
	}
	for _, k := range logcatalog.Keys {
		require.NotEmpty(t, k.Doc, "%s: doc", k.Name)
	}
}

// usedNames returns the Event* and Key* names of package obs that the
// service's code uses outside the catalog's own files.
func usedNames(t *testing.T) map[string]bool {
	t.Helper()
	catalogFiles := map[string]bool{"names.go": true}
	used := map[string]bool{}
	require.NoError(t, walkCode(t, func(fset *token.FileSet, f *ast.File) {
		path := filepath.ToSlash(fset.Position(f.Package).Filename)
		inObs := f.Name.Name == "obs"
		if inObs && catalogFiles[filepath.Base(path)] || strings.Contains(path, "internal/logcatalog/") {
			return // the catalog itself, and the generator of its documents
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if pkg, ok := n.X.(*ast.Ident); ok && pkg.Name == "obs" {
					used[n.Sel.Name] = true
				}
			case *ast.Ident:
				if inObs {
					used[n.Name] = true
				}
			}
			return true
		})
	}))
	return used
}

// documentedEvents reads the event names from the first column of the
// events table in docs/logging.md.
func documentedEvents(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "logging.md"))
	require.NoError(t, err)
	doc := string(raw)
	start := strings.Index(doc, "## Events")
	require.GreaterOrEqual(t, start, 0)
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	names := regexp.MustCompile("`([a-z_]+)`")
	out := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		for _, m := range names.FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
