// Command gen writes the log contract's documents from the catalog of
// package obs: docs/log-schema.json, and the events table of
// docs/logging.md between its markers (the prose around it is left as it
// is). Run it with go generate ./internal/obs after changing
// internal/obs/catalog.go or keys.go.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/backtestd/backtestd/internal/obs/logdoc"
)

func main() {
	if err := run(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// run writes the files under root, the module's directory (go generate
// runs in internal/obs).
func run(root string) error {
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run it in internal/obs: go generate ./internal/obs")
	}
	schema, err := logdoc.Schema()
	if err != nil {
		return err
	}
	if err := write(filepath.Join(root, logdoc.SchemaPath), schema); err != nil {
		return err
	}
	path := filepath.Join(root, logdoc.LoggingPath)
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc, err = logdoc.Logging(doc)
	if err != nil {
		return err
	}
	return write(path, doc)
}

func write(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil { //nolint:gosec // a document of the repository
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
