package obs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
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
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	calls := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
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
			if !ok || len(call.Args) <= idx || !looksLikeLogger(sel.X) {
				return true
			}
			calls++
			msg, ok := call.Args[idx].(*ast.SelectorExpr)
			pkg, _ := ast.Unparen(msgX(msg)).(*ast.Ident)
			require.True(t, ok && pkg != nil && pkg.Name == "obs" && strings.HasPrefix(msg.Sel.Name, "Event"),
				"%s: %s's message must be an obs.Event* constant", fset.Position(call.Pos()), sel.Sel.Name)
			return true
		})
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, calls, 20, "the walk must have found the service's logging calls")
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
