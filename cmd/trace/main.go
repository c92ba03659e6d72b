// Command trace prints the timeline of one request and its job from the
// services' JSON log lines, for a bug report that quotes a correlation ID:
//
//	docker compose logs server worker | trace bug-1234
//	trace --run 01a2175f-386b-7761-8b43-c03581273143 server.log worker.log
//	trace --job 42 --json < all.log
//	trace --id -h server.log       # or: trace -- -h server.log
//
// A correlation ID may start with '-', so an ID given as the first argument
// could be read as a flag: give such an ID with --id, or after "--".
//
// It reads the files named (standard input without any), raw or with docker
// compose's "service-1  | " prefixes, skips what is not JSON, and prints the
// selected lines sorted by timestamp: a readable timeline, or with --json the
// lines themselves. It exits 1 when no line matches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/backtestd/backtestd/internal/obs"
	"github.com/backtestd/backtestd/internal/timeline"
)

func main() {
	signal.Ignore(syscall.SIGPIPE) // `trace ... | head` ends quietly below
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr, isTerminal(os.Stdout))
	stop()
	var exit exitError
	switch {
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintln(os.Stderr, "trace:", exit.msg)
		}
		os.Exit(exit.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "trace:", err)
		os.Exit(2)
	}
}

// exitError ends the program with a code of its own: 1 when nothing
// matched, 2 for a usage error.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

func run(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	corrID := fs.String("id", "", "select a request's lines by correlation_id (any ID, even one that starts with -)")
	runID := fs.String("run", "", "select a run's lines by run_id")
	jobID := fs.String("job", "", "select a job's lines by job_id")
	asJSON := fs.Bool("json", false, "print the selected JSON lines, sorted, instead of a timeline")
	color := fs.String("color", "auto", "colour levels: auto (on a terminal), always or never")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trace [--json] [--color auto|always|never] "+
			"(CORRELATION_ID | --id CORRELATION_ID | --run RUN_ID | --job JOB_ID) [FILE...]")
		fmt.Fprintln(stderr, "       trace [flags] -- CORRELATION_ID [FILE...]    (an ID that starts with -)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return exitError{code: 2}
	}
	rest := fs.Args()
	given := 0
	for _, v := range []string{*corrID, *runID, *jobID} {
		if v != "" {
			given++
		}
	}
	var sel timeline.Selector
	switch {
	case given > 1:
		return exitError{code: 2, msg: "give one of --id, --run or --job"}
	case *corrID != "":
		sel = timeline.Selector{Field: obs.KeyCorrelationID, Value: *corrID}
	case *runID != "":
		sel = timeline.Selector{Field: obs.KeyRunID, Value: *runID}
	case *jobID != "":
		sel = timeline.Selector{Field: obs.KeyJobID, Value: *jobID}
	case len(rest) > 0 && rest[0] != "":
		sel = timeline.Selector{Field: obs.KeyCorrelationID, Value: rest[0]}
		rest = rest[1:]
	default:
		fs.Usage()
		return exitError{code: 2}
	}
	useColor := false
	switch *color {
	case "always":
		useColor = true
	case "auto":
		useColor = tty && os.Getenv("NO_COLOR") == "" //nolint:forbidigo // a terminal convention, not a setting
	case "never":
	default:
		return exitError{code: 2, msg: fmt.Sprintf("--color must be auto, always or never, not %q", *color)}
	}

	input, closeAll, err := openInputs(rest, stdin)
	if err != nil {
		return err
	}
	defer closeAll()
	entries, err := timeline.Select(input, sel)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return exitError{code: 1, msg: fmt.Sprintf("no lines with %s %s", sel.Field, sel.Value)}
	}
	if *asJSON {
		for _, e := range entries {
			if _, err := fmt.Fprintf(stdout, "%s\n", e.Raw); err != nil {
				return nil // the reader left (trace | head): nothing more to say
			}
		}
		return nil
	}
	if err := timeline.Render(stdout, entries, timeline.Options{Color: useColor}); err != nil && !errors.Is(err, syscall.EPIPE) {
		return err
	}
	return nil
}

// openInputs concatenates the named files, or returns stdin. Each file must
// end its lines with newlines for lines not to run together; a missing final
// newline is supplied.
func openInputs(names []string, stdin io.Reader) (io.Reader, func(), error) {
	if len(names) == 0 {
		return stdin, func() {}, nil
	}
	var readers []io.Reader
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	for _, name := range names {
		f, err := os.Open(name) //nolint:gosec // reading the files the user named is the point
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("open %s: %w", name, err)
		}
		files = append(files, f)
		readers = append(readers, f, newline{})
	}
	return io.MultiReader(readers...), closeAll, nil
}

// newline is a reader of one "\n", put between files.
type newline struct{}

func (newline) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = '\n'
	return 1, io.EOF
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
