// Command benchratio turns `go test -bench -count N` output into a table of
// median ratios against a baseline measured in the same run.
//
// The variants of a family are sub-benchmarks of one benchmark. Run the
// test binary once per round (go test -count would run each variant N times
// in a row): round i of a variant is then compared with round i of the
// baseline, measured moments apart, and the table gives the median of those
// ratios with their min and max. On a shared, noisy machine absolute numbers
// drift; ratios of neighbouring measurements hold. bench/run does this.
//
//	for i in 1 2 3 4 5; do ./obs.test -test.run '^$' -test.bench JobLine; done | go run ./bench/benchratio -base JobLine=slog_json
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func main() {
	base := flag.String("base", "", "comma-separated family=baseline pairs, e.g. JobLine=slog_json")
	metric := flag.String("metric", "ns/op", "the metric the ratios are taken of")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, parseBases(*base), *metric); err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
}

func parseBases(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return out
}

var line = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// results maps family -> variant -> metric -> one value per round.
type results map[string]map[string]map[string][]float64

func run(r io.Reader, w io.Writer, bases map[string]string, metric string) error {
	res := results{}
	var order []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		family, variant, _ := strings.Cut(m[1], "/")
		if res[family] == nil {
			res[family] = map[string]map[string][]float64{}
			order = append(order, family)
		}
		if res[family][variant] == nil {
			res[family][variant] = map[string][]float64{}
		}
		fields := strings.Fields(m[3])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				continue
			}
			res[family][variant][fields[i+1]] = append(res[family][variant][fields[i+1]], v)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	fmt.Fprintf(w, "| benchmark | variant | rounds | median %s | allocs/op | ratio to baseline: median (min-max) | other metrics (median) |\n", metric)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, family := range order {
		variants := res[family]
		names := make([]string, 0, len(variants))
		for v := range variants {
			names = append(names, v)
		}
		sort.Strings(names)
		baseline := variants[bases[family]]
		for _, v := range names {
			ms := variants[v]
			ratio := "-"
			if baseline != nil {
				if v == bases[family] {
					ratio = "1.00 (baseline)"
				} else {
					ratio = ratios(ms[metric], baseline[metric])
				}
			}
			var other []string
			for k, vals := range ms {
				if k != metric && k != "allocs/op" && k != "B/op" {
					other = append(other, fmt.Sprintf("%s %s", format(median(vals)), k))
				}
			}
			sort.Strings(other)
			name := v
			if name == "" {
				name = "-"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s |\n", family, name, len(ms[metric]),
				format(median(ms[metric])), format(median(ms["allocs/op"])), ratio, strings.Join(other, ", "))
		}
	}
	return nil
}

// ratios pairs round i of a variant with round i of its baseline.
func ratios(vals, base []float64) string {
	n := min(len(vals), len(base))
	if n == 0 {
		return "-"
	}
	rs := make([]float64, n)
	for i := range n {
		rs[i] = vals[i] / base[i]
	}
	return fmt.Sprintf("%s (%s-%s)", formatRatio(median(rs)), formatRatio(slices.Min(rs)), formatRatio(slices.Max(rs)))
}

// formatRatio gives two decimals, or three significant digits for a small
// ratio (a share of a few percent), which two decimals would round away.
func formatRatio(r float64) string {
	if r < 0.1 {
		return strconv.FormatFloat(r, 'g', 3, 64)
	}
	return strconv.FormatFloat(r, 'f', 2, 64)
}

func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
