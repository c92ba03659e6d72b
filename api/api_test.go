package api_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/api"
	"github.com/backtestd/backtestd/api/internal/yamljson"
	"github.com/backtestd/backtestd/internal/apitest"
	"github.com/backtestd/backtestd/internal/store"
)

// The served JSON is openapi.yaml's, as it is now: go generate ./api was
// run after the last change.
func TestJSONIsCurrent(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("openapi.yaml")
	require.NoError(t, err)
	want, err := yamljson.Convert(src)
	require.NoError(t, err)
	require.Equal(t, string(want), string(api.JSON()), "openapi.json is stale: run go generate ./api")

	doc, err := apitest.Load(t.Context(), api.JSON())
	require.NoError(t, err)
	require.True(t, doc.IsOpenAPI31OrLater(), "an OpenAPI 3.1 document")
}

// The committed client is what the pinned generator makes of openapi.yaml
// now: the generator is run again, as go generate runs it, into a
// directory of the test's.
func TestClientIsCurrent(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("api.go")
	require.NoError(t, err)
	var args []string
	for line := range strings.Lines(string(src)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//go:generate go run github.com/oapi-codegen/"); ok {
			args = append([]string{"run", "github.com/oapi-codegen/" + strings.Fields(rest)[0]}, strings.Fields(rest)[1:]...)
		}
	}
	require.NotEmpty(t, args, "api.go has no go:generate line for oapi-codegen")
	// The same configuration, writing into the test's directory.
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	for i, a := range args {
		if a != "-config" || i+1 == len(args) {
			continue
		}
		cfg, err := os.ReadFile(args[i+1])
		require.NoError(t, err)
		var lines []string
		for line := range strings.Lines(string(cfg)) {
			if strings.HasPrefix(line, "output:") {
				line = "output: " + out + "\n"
			}
			lines = append(lines, line)
		}
		args[i+1] = filepath.Join(dir, "oapi-codegen.yaml")
		require.NoError(t, os.WriteFile(args[i+1], []byte(strings.Join(lines, "")), 0o600))
	}
	cmd := exec.CommandContext(t.Context(), "go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Run(), "go %s: %s", strings.Join(args, " "), stderr.String())

	fresh, err := os.ReadFile(out)
	require.NoError(t, err)
	committed, err := os.ReadFile(filepath.Join("client", "client.gen.go"))
	require.NoError(t, err)
	require.Equal(t, string(fresh), string(committed), "client/client.gen.go is stale: run go generate ./api")
}

// A change to the YAML changes the JSON: the check above can fail.
func TestConvertFollowsTheYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
		wantErr          string
	}{
		{name: "order kept", yaml: "b: 1\na: [x, 2.5, true, null]\n", want: "{\n  \"b\": 1,\n  \"a\": [\n    \"x\",\n    2.5,\n    true,\n    null\n  ]\n}\n"},
		{name: "quoted numbers stay strings", yaml: "'200':\n  x: '1'\n", want: "{\n  \"200\": {\n    \"x\": \"1\"\n  }\n}\n"},
		{name: "duplicate key", yaml: "a: 1\na: 2\n", wantErr: "appears twice"},
		{name: "alias", yaml: "a: &x 1\nb: *x\n", wantErr: "aliases"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := yamljson.Convert([]byte(tt.yaml))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

// The document's error codes are the ones the service writes: a code added
// to internal/store and not to the contract would fail every client that
// validates responses.
func TestErrorCodesAreTheServices(t *testing.T) {
	t.Parallel()
	doc, err := apitest.Load(t.Context(), api.JSON())
	require.NoError(t, err)
	schema := doc.Components.Schemas["ErrorCode"]
	require.NotNil(t, schema, "components.schemas.ErrorCode")
	var documented []string
	for _, v := range schema.Value.Enum {
		documented = append(documented, v.(string))
	}
	require.ElementsMatch(t, store.ErrorCodes(), documented)
}
