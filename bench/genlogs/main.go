// Command genlogs writes a large `docker compose logs` file for benchmarking
// the trace command: the real lines of one request and its job (taken from
// internal/timeline/testdata/compose.log), repeated as many interleaved
// flows, each with its own correlation ID, with compose prefixes and some
// lines that are not JSON.
//
//	go run ./bench/genlogs -size-mb 200 -flows 10000 -out /tmp/bench.log
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

func main() {
	sizeMB := flag.Int("size-mb", 200, "size of the file to write, in MiB")
	flows := flag.Int("flows", 10_000, "how many request/job flows to interleave")
	out := flag.String("out", "", "the file to write")
	template := flag.String("template", "internal/timeline/testdata/compose.log", "lines to repeat")
	flag.Parse()
	if err := run(*sizeMB, *flows, *out, *template); err != nil {
		fmt.Fprintln(os.Stderr, "genlogs:", err)
		os.Exit(1)
	}
}

func run(sizeMB, flows int, out, templatePath string) error {
	raw, err := os.ReadFile(templatePath) //nolint:gosec // a path the developer names
	if err != nil {
		return fmt.Errorf("read template: %w", err)
	}
	// The lines of the bug-1234 flow, without their prefixes.
	var tmpl [][]byte
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if i := bytes.IndexByte(line, '{'); i >= 0 && bytes.Contains(line, []byte(`"correlation_id":"bug-1234"`)) {
			tmpl = append(tmpl, line[i:])
		}
	}
	if len(tmpl) == 0 {
		return fmt.Errorf("no template lines in %s", templatePath)
	}
	f, err := os.Create(out) //nolint:gosec // a path the developer names
	if err != nil {
		return fmt.Errorf("create %s: %w", out, err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	t := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	limit := int64(sizeMB) << 20
	var written int64
	for n := 0; written < limit; n++ {
		flow, step := n%flows, (n/flows)%len(tmpl)
		line := string(tmpl[step])
		line = strings.Replace(line, `"correlation_id":"bug-1234"`, fmt.Sprintf(`"correlation_id":"flow-%05d"`, flow), 1)
		line = replaceTimestamp(line, t.Add(time.Duration(n)*time.Microsecond))
		prefix := "server-1  | "
		if strings.Contains(line, `"service":"worker"`) {
			prefix = "worker-1  | "
		}
		k, _ := fmt.Fprintf(w, "%s%s\n", prefix, line)
		written += int64(k)
		if n%997 == 0 {
			k, _ = fmt.Fprintf(w, "postgres-1  | %s UTC [42] LOG:  checkpoint complete: wrote %d buffers\n",
				t.Format("2006-01-02 15:04:05.000"), n%300)
			written += int64(k)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

func replaceTimestamp(line string, t time.Time) string {
	const key = `"timestamp":"`
	i := strings.Index(line, key)
	if i < 0 {
		return line
	}
	start := i + len(key)
	end := strings.IndexByte(line[start:], '"')
	return line[:start] + t.UTC().Format("2006-01-02T15:04:05.000000Z") + line[start+end:]
}
