package obs_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
// message, never a literal or a computed string.
func TestLogCallsUseCatalogEvents(t *testing.T) {
	t.Parallel()
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

// The catalog is one list kept in three places: the Event constants, the
// events table of docs/logging.md and the schema's event enum. A test fails
// when they differ, or when an event is never used by the service's code.
func TestEventCatalogMatchesTheDocs(t *testing.T) {
	t.Parallel()
	constants := eventConstants(t) // name -> value

	used := map[string]bool{}
	require.NoError(t, walkCode(t, func(_ *token.FileSet, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "obs" && strings.HasPrefix(sel.Sel.Name, "Event") {
					used[sel.Sel.Name] = true
				}
			}
			return true
		})
	}))
	values := map[string]bool{}
	for name, value := range constants {
		require.True(t, used[name], "obs.%s (%s) is never emitted by the service's code", name, value)
		values[value] = true
	}

	documented := documentedEvents(t)
	require.Equal(t, sortedKeys(values), sortedKeys(documented), "docs/logging.md's events table and the Event constants differ")

	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "log-schema.json"))
	require.NoError(t, err)
	var schema struct {
		Properties struct {
			Event struct {
				Enum []string `json:"enum"`
			} `json:"event"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(raw, &schema))
	enum := map[string]bool{}
	for _, e := range schema.Properties.Event.Enum {
		enum[e] = true
	}
	require.Equal(t, sortedKeys(values), sortedKeys(enum), "docs/log-schema.json's event enum and the Event constants differ")
}

func eventConstants(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, v := range constants(t) {
		if strings.HasPrefix(name, "Event") {
			out[name] = v
		}
	}
	require.NotEmpty(t, out)
	return out
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
