// Command tojson checks the OpenAPI document and writes its JSON form, the
// one the server serves: go generate ./api runs it.
//
//	tojson openapi.yaml openapi.json
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/backtestd/backtestd/api/internal/yamljson"
	"github.com/backtestd/backtestd/internal/apitest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tojson:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: tojson openapi.yaml openapi.json")
	}
	src, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	out, err := yamljson.Convert(src)
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	// The document must be a valid one before it is served: the check the
	// tests load it with.
	if _, err := apitest.Load(context.Background(), out); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return os.WriteFile(args[1], out, 0o644) //nolint:gosec // a file of the repository, read by all
}
