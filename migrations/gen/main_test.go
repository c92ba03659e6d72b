package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// copyMigrations copies the committed migrations into a new directory and
// returns it, with the committed files by name.
func copyMigrations(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	committed := map[string][]byte{}
	files, err := filepath.Glob(filepath.Join("..", "*.sql"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range append(files, filepath.Join("..", "migrations.go")) {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		committed[filepath.Base(f)] = data
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o600))
	}
	return dir, committed
}

// lastNumber is the highest goose number among the files in dir.
func lastNumber(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	last := 0
	for _, e := range entries {
		if m := fileName.FindStringSubmatch(e.Name()); m != nil {
			n, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			last = max(last, n)
		}
	}
	return last
}

func TestGenerate(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name string
		// change alters the copy before gen runs, and returns what gen must
		// write: each new or rewritten file and the committed file it must equal.
		change func(t *testing.T, dir string) map[string]string
	}{
		{
			name:   "the committed files are what gen writes",
			change: func(*testing.T, string) map[string]string { return nil },
		},
		{
			name: "a new River version gets the next goose number",
			change: func(t *testing.T, dir string) map[string]string {
				t.Helper()
				// As if River had just added version 8.
				require.NoError(t, os.Remove(filepath.Join(dir, "00008_river_v8.sql")))
				next := fmt.Sprintf("%05d_river_v8.sql", lastNumber(t, dir)+1)
				return map[string]string{next: "00008_river_v8.sql"}
			},
		},
		{
			name: "an edited file is written again under its goose number",
			change: func(t *testing.T, dir string) map[string]string {
				t.Helper()
				require.NoError(t, os.WriteFile(filepath.Join(dir, "00003_river_v3.sql"), []byte("-- edited\n"), 0o600))
				return map[string]string{"00003_river_v3.sql": "00003_river_v3.sql"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, committed := copyMigrations(t)
			want := tt.change(t, dir)

			var out strings.Builder
			require.NoError(t, run(dir, &out))

			wantOut := []string{}
			for name := range want {
				wantOut = append(wantOut, "wrote "+filepath.Join(dir, name))
			}
			gotOut := []string{}
			if out.Len() > 0 {
				gotOut = strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			}
			require.ElementsMatch(t, wantOut, gotOut, "gen reports the files it wrote")
			for name, from := range want {
				got, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				require.Equal(t, string(committed[from]), string(got), name)
			}
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			for _, e := range entries {
				if _, ok := want[e.Name()]; ok {
					continue
				}
				got, err := os.ReadFile(filepath.Join(dir, e.Name()))
				require.NoError(t, err)
				require.Equal(t, string(committed[e.Name()]), string(got), "%s is as committed (run go generate ./migrations)", e.Name())
			}
		})
	}
}
