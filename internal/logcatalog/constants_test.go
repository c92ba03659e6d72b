package logcatalog_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// constants parses internal/obs/names.go: the name and value
// of every Key* and Event* constant.
func constants(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, file := range []string{filepath.Join("..", "obs", "names.go")} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		require.NoError(t, err)
		addConstants(t, f, out)
	}
	return out
}

func addConstants(t *testing.T, f *ast.File, out map[string]string) {
	t.Helper()
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs, ok := spec.(*ast.ValueSpec)
			require.True(t, ok)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Key") && !strings.HasPrefix(name.Name, "Event") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				require.True(t, ok, "%s must be a string literal", name.Name)
				v, err := strconv.Unquote(lit.Value)
				require.NoError(t, err)
				out[name.Name] = v
			}
		}
	}
}

// sloglint checks the case of literal keys only, not of constants imported
// from this package, so the constants are checked here.
func TestKeysAndEventsAreSnakeCase(t *testing.T) {
	t.Parallel()
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[string]string{}
	for name, v := range constants(t) {
		require.Regexp(t, snake, v, "%s", name)
		prev, dup := seen[v]
		require.False(t, dup, "%s and %s share the value %q", prev, name, v)
		seen[v] = name
	}
	require.Greater(t, len(seen), 40)
}
