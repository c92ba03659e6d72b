// Command server is the target of bench/benchhttp: the service's /healthz
// route (a small JSON body, no database) behind one of the request
// middlewares compared, logging JSON to stdout. "ours" is the service's own
// handler, httpx.NewServer; the others serve the same route from a bare
// gorilla/mux router. It prints its address on stderr and serves until stdin closes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httplog/v3"
	"github.com/gorilla/handlers"
	"github.com/gorilla/mux"

	"github.com/backtestd/backtestd/internal/httpx"
	"github.com/backtestd/backtestd/internal/obs"
)

func main() {
	variant := flag.String("variant", "none", "none (or none-again), ours, ours-unlogged, httplog or gorilla")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the serving to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "server: cpu profile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*variant); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1) //nolint:gocritic // the profile of a failed run is of no use
	}
}

func run(variant string) error {
	r := mux.NewRouter()
	r.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	}).Methods(http.MethodGet, http.MethodHead)

	var h http.Handler
	switch variant {
	case "none", "none-again":
		h = r
	case "ours":
		h = httpx.NewServer(obs.NewLogger(os.Stdout, obs.Options{Service: "server"}), httpx.Deps{})
	case "ours-unlogged":
		// The correlation ID and its context, without the access line: what
		// the line itself costs is the difference to "ours".
		h = httpx.NewServer(obs.NewLogger(os.Stdout, obs.Options{Service: "server", Level: slog.LevelError}), httpx.Deps{})
	case "httplog":
		logger := slog.New(slog.NewJSONHandler(os.Stdout, nil)) //nolint:sloglint // the peer, as its docs set it up
		withID := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				httplog.SetAttrs(req.Context(), slog.String("request_id", middleware.GetReqID(req.Context()))) //nolint:sloglint // the peer's own key
				next.ServeHTTP(w, req)
			})
		}
		h = middleware.RequestID(httplog.RequestLogger(logger, &httplog.Options{Level: slog.LevelInfo})(withID(r)))
	case "gorilla":
		h = handlers.LoggingHandler(os.Stdout, r)
	default:
		return fmt.Errorf("unknown variant %q", variant)
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	fmt.Fprintln(os.Stderr, ln.Addr().String())
	srv := &http.Server{Handler: h} //nolint:gosec // loopback benchmark target, no slow clients
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // the driver closes stdin to stop us
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed { //nolint:errorlint // net/http's sentinel
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
