// Command benchtrace times the trace command against the documented jq
// recipe and against `grep -F` (the floor: reading the bytes) on one file,
// alternating the three round by round, checks that trace selects exactly
// what jq selects, and prints median ratios to grep's time.
//
//	go run ./bench/benchtrace -file /tmp/bench.log -id flow-04242 -trace bin/trace
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"
)

func main() {
	file := flag.String("file", "", "the log file")
	id := flag.String("id", "", "the correlation ID to select")
	rounds := flag.Int("rounds", 5, "rounds")
	trace := flag.String("trace", "bin/trace", "the trace binary")
	flag.Parse()
	if err := run(*file, *id, *rounds, *trace); err != nil {
		fmt.Fprintln(os.Stderr, "benchtrace:", err)
		os.Exit(1)
	}
}

func run(file, id string, rounds int, trace string) error {
	ctx := context.Background()
	jqRecipe := `sub("^[^{]*"; "") | fromjson? | objects | select(.correlation_id == $id)`
	variants := []struct {
		name string
		cmd  func() *exec.Cmd
	}{
		// grep writes to a file: with its output on /dev/null, GNU grep
		// stops at the first match.
		{"grep -F", func() *exec.Cmd { return exec.CommandContext(ctx, "grep", "-F", id, file) }},
		{"trace --json", func() *exec.Cmd { return exec.CommandContext(ctx, trace, "--json", id, file) }},
		{"jq recipe", func() *exec.Cmd { return exec.CommandContext(ctx, "jq", "-cR", "--arg", "id", id, jqRecipe, file) }},
	}
	times := make([][]time.Duration, len(variants))
	outputs := make([][]byte, len(variants))
	for range rounds {
		for i, v := range variants {
			out, err := os.CreateTemp("", "benchtrace-")
			if err != nil {
				return fmt.Errorf("temp file: %w", err)
			}
			cmd := v.cmd()
			cmd.Stdout = out
			start := time.Now()
			err = cmd.Run()
			times[i] = append(times[i], time.Since(start))
			_ = out.Close()
			data, rerr := os.ReadFile(out.Name())
			_ = os.Remove(out.Name())
			if err != nil || rerr != nil {
				return fmt.Errorf("%s: %w", v.name, errorsJoin(err, rerr))
			}
			outputs[i] = data
		}
	}
	// trace sorts by timestamp and strips prefixes; jq keeps input order.
	// Compare them as sets of canonical lines.
	traceLines, err := canonical(ctx, outputs[1])
	if err != nil {
		return err
	}
	jqLines, err := canonical(ctx, outputs[2])
	if err != nil {
		return err
	}
	same := slices.Equal(traceLines, jqLines)
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("stat %s: %w", file, err)
	}
	fmt.Printf("%d MiB, %d rounds, %d lines selected; trace's selection equals jq's: %v\n\n",
		st.Size()>>20, rounds, len(traceLines), same)
	fmt.Println("| command | median seconds | MB/s | ratio to grep -F: median (min-max) |")
	fmt.Println("|---|---|---|---|")
	for i, v := range variants {
		ratios := make([]float64, rounds)
		for r := range rounds {
			ratios[r] = times[i][r].Seconds() / times[0][r].Seconds()
		}
		med := median(times[i])
		fmt.Printf("| `%s` | %.3f | %.0f | %.2f (%.2f-%.2f) |\n", v.name, med.Seconds(),
			float64(st.Size())/1e6/med.Seconds(), medianF(ratios), slices.Min(ratios), slices.Max(ratios))
	}
	if !same {
		return fmt.Errorf("trace selected %d lines, jq %d, or not the same ones", len(traceLines), len(jqLines))
	}
	return nil
}

// canonical re-encodes each line with jq -c and sorts them.
func canonical(ctx context.Context, data []byte) ([]string, error) {
	cmd := exec.CommandContext(ctx, "jq", "-c", ".")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("jq -c: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines)
	return lines, nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(fs []float64) float64 {
	s := slices.Clone(fs)
	slices.Sort(s)
	return s[len(s)/2]
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
