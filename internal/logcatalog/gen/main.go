// Command gen writes the log contract's documents from the catalog of
// package obs: docs/log-schema.json, and the events table of
// docs/logging.md between its markers (the prose around it is left as it
// is). Run it with go generate ./internal/logcatalog after
// changing the catalog (events.go, keys.go).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/backtestd/backtestd/internal/logcatalog"
)

func main() {
	if err := run(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

// run writes the files under root, the module's directory (go generate
// runs in internal/logcatalog).
func run(root string) error {
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return errors.New("run it in internal/logcatalog: go generate ./internal/logcatalog")
	}
	schema, err := logcatalog.Schema()
	if err != nil {
		return err
	}
	if err := write(filepath.Join(root, logcatalog.SchemaPath), schema); err != nil {
		return err
	}
	path := filepath.Join(root, logcatalog.LoggingPath)
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	doc, err = logcatalog.Logging(doc)
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
