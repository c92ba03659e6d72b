// Command trace prints the timeline of one request and its job from the
// services' JSON log lines, for a bug report that quotes a correlation ID:
//
//	docker compose logs server worker | trace bug-1234
//	trace --run 01a2175f-386b-7761-8b43-c03581273143 server.log worker.log
//	trace --job 42 --json < all.log
//	trace --trace-id 4bf92f3577b34da6a3ce929d0e0e4736 server.log worker.log
//	trace --id -h server.log       # or: trace -- -h server.log
//
// A correlation ID may start with '-', so an ID given as the first argument
// could be read as a flag: give such an ID with --id, or after "--".
//
// It reads the files named (standard input without any), raw or with docker
// compose's "service-1  | " prefixes, skips what is not JSON, and prints the
// selected lines sorted by timestamp: a readable timeline, or with --json the
// lines themselves. A fan-out, lines of more than 20 runs (a sweep's
// correlation ID), is summarised instead of printed line by line: lines per
// event and level, runs per outcome, the slowest attempts, the lines of no
// run and every warn and error line in full, and how to see one run
// (trace --run RUN_ID); --full prints the whole timeline all the same. It exits 1 when no line matches, and 2 when it cannot
// read its input or write its output (a closed pipe, as in trace ID | head,
// is not a failure).
package main

import (
	"bufio"
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
	err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr, isTerminal(os.Stdout))
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
// matched, 2 for a usage error, 130 when interrupted.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// options are what the command line asks for.
type options struct {
	sel    timeline.Selector
	files  []string
	asJSON bool
	full   bool
	color  string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer, tty bool) error {
	opts, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the usage was the answer
	}
	if err != nil {
		return err
	}
	useColor := false
	switch opts.color {
	case "always":
		useColor = true
	case "auto":
		useColor = tty && getenv("NO_COLOR") == "" // https://no-color.org
	case "never":
	default:
		return exitError{code: 2, msg: fmt.Sprintf("--color must be auto, always or never, not %q", opts.color)}
	}

	input, closeAll, err := openInputs(opts.files, stdin)
	if err != nil {
		return err
	}
	defer closeAll()
	entries, err := selectLines(ctx, input, opts.sel)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return exitError{code: 1, msg: fmt.Sprintf("no lines with %s %s", opts.sel.Field, opts.sel.Value)}
	}
	return writeOutput(stdout, entries, opts.asJSON, !opts.full && timeline.Runs(entries) > timeline.FanOutRuns, useColor)
}

// parseArgs reads the command line. Its errors are exitErrors, or
// flag.ErrHelp when -h was answered with the usage.
func parseArgs(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	corrID := fs.String("id", "", "select a request's lines by correlation_id (any ID, even one that starts with -)")
	runID := fs.String("run", "", "select a run's lines by run_id")
	jobID := fs.String("job", "", "select a job's lines by job_id")
	traceID := fs.String("trace-id", "", "select the lines of a W3C trace by trace_id: every request that came with its traceparent, and their jobs")
	asJSON := fs.Bool("json", false, "print the selected JSON lines, sorted, instead of a timeline")
	full := fs.Bool("full", false, fmt.Sprintf("print every line of a fan-out (more than %d runs) instead of its summary", timeline.FanOutRuns))
	color := fs.String("color", "auto", "colour levels: auto (on a terminal, unless NO_COLOR is set), always or never")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trace [--json | --full] [--color auto|always|never] "+
			"(CORRELATION_ID | --id CORRELATION_ID | --run RUN_ID | --job JOB_ID | --trace-id TRACE_ID) [FILE...]")
		fmt.Fprintln(stderr, "       trace [flags] -- CORRELATION_ID [FILE...]    (an ID that starts with -)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, flag.ErrHelp
		}
		return options{}, exitError{code: 2}
	}
	opts := options{files: fs.Args(), asJSON: *asJSON, full: *full, color: *color}
	given := 0
	for _, v := range []string{*corrID, *runID, *jobID, *traceID} {
		if v != "" {
			given++
		}
	}
	switch {
	case given > 1:
		return options{}, exitError{code: 2, msg: "give one of --id, --run, --job or --trace-id"}
	case *corrID != "":
		opts.sel = timeline.Selector{Field: obs.KeyCorrelationID, Value: *corrID}
	case *runID != "":
		opts.sel = timeline.Selector{Field: obs.KeyRunID, Value: *runID}
	case *jobID != "":
		opts.sel = timeline.Selector{Field: obs.KeyJobID, Value: *jobID}
	case *traceID != "":
		opts.sel = timeline.Selector{Field: obs.KeyTraceID, Value: *traceID}
	case len(opts.files) > 0 && opts.files[0] != "":
		opts.sel = timeline.Selector{Field: obs.KeyCorrelationID, Value: opts.files[0]}
		opts.files = opts.files[1:]
	default:
		fs.Usage()
		return options{}, exitError{code: 2}
	}
	return opts, nil
}

// selectLines selects from input until it ends or ctx is done: a pipe that
// never closes (docker compose logs -f) is left to Ctrl-C, whose signal
// main has taken over.
func selectLines(ctx context.Context, input io.Reader, sel timeline.Selector) ([]timeline.Entry, error) {
	type selected struct {
		entries []timeline.Entry
		err     error
	}
	done := make(chan selected, 1) // the reader may finish after nobody waits
	go func() {
		entries, err := timeline.Select(input, sel)
		done <- selected{entries, err}
	}()
	select {
	case s := <-done:
		if s.err != nil {
			return nil, fmt.Errorf("read input: %w", s.err)
		}
		return s.entries, nil
	case <-ctx.Done():
		return nil, exitError{code: 130, msg: "interrupted before the input ended"}
	}
}

// writeOutput prints entries as a timeline, as a summary if summarise, or,
// asJSON, as the lines themselves. A reader that left (trace | head) is no
// failure; any other write error is, or a full disk would pass for a
// complete timeline.
func writeOutput(w io.Writer, entries []timeline.Entry, asJSON, summarise, color bool) error {
	var err error
	switch {
	case asJSON:
		bw := bufio.NewWriter(w)
		for _, e := range entries {
			_, _ = bw.Write(e.Raw) // a bufio error resurfaces at Flush
			_ = bw.WriteByte('\n')
		}
		err = bw.Flush()
	case summarise:
		err = timeline.RenderSummary(w, entries, "trace --run", timeline.Options{Color: color})
	default:
		err = timeline.Render(w, entries, timeline.Options{Color: color})
	}
	if err != nil && !errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("write output: %w", err)
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
