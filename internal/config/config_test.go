package config_test

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/config"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	s, err := config.LoadServer(env(nil))
	require.NoError(t, err)
	require.Equal(t, config.DefaultDatabaseURL, s.DatabaseURL)
	require.Equal(t, ":8080", s.HTTPAddr)
	require.Equal(t, slog.LevelInfo, s.LogLevel)
	require.Equal(t, 50_000, s.MaxUnfinishedRuns)
	w, err := config.LoadWorker(env(nil))
	require.NoError(t, err)
	require.Equal(t, 4, w.Concurrency)
	require.Equal(t, 30*time.Minute, w.JobTimeout)
	require.Equal(t, 40*time.Minute, w.RescueAfter)
	require.Equal(t, slog.LevelWarn, w.RiverLogLevel)
	require.Empty(t, w.MetricsAddr, "no metrics listener unless asked")
}

func TestRiverUICredentials(t *testing.T) {
	t.Parallel()
	s, err := config.LoadServer(env(map[string]string{"RIVERUI_USER": "ops", "RIVERUI_PASSWORD": " a long secret "}))
	require.NoError(t, err)
	require.True(t, s.RiverUIEnabled())
	require.Equal(t, " a long secret ", s.RiverUIPassword)
	_, err = config.LoadServer(env(map[string]string{"RIVERUI_USER": "ops"}))
	require.ErrorContains(t, err, "must be set together")
	_, err = config.LoadServer(env(map[string]string{"RIVERUI_PASSWORD": "x"}))
	require.ErrorContains(t, err, "must be set together")
	s, err = config.LoadServer(env(nil))
	require.NoError(t, err)
	require.False(t, s.RiverUIEnabled(), "off by default")
}

func TestRiverUIPasswordLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, password string
		wantErr        string
	}{
		{name: "one character", password: "x", wantErr: "RIVERUI_PASSWORD must be at least 12 characters long (it has 1)"},
		{name: "eleven characters", password: "s3cret pass", wantErr: "(it has 11)"},
		{name: "eleven characters, more bytes", password: "ééééééééééé", wantErr: "(it has 11)"},
		{name: "twelve characters", password: "s3cret passw"},
		{name: "twelve multibyte characters", password: "éééééééééééé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := config.LoadServer(env(map[string]string{"RIVERUI_USER": "ops", "RIVERUI_PASSWORD": tt.password}))
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.password, s.RiverUIPassword)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), tt.password, "the error never shows the password")
		})
	}
}

func TestAbuseSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, s config.Server)
	}{
		{name: "defaults", check: func(t *testing.T, s config.Server) {
			t.Helper()
			require.Empty(t, s.TrustedProxies)
			require.Equal(t, 10, s.AuthFailureBurst)
			require.Equal(t, 6*time.Second, s.AuthFailureInterval)
			require.Equal(t, 10_000, s.AuthFailureAddresses)
		}},
		{name: "values", env: map[string]string{
			"TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,10.1.2.3/16", "AUTH_FAILURE_BURST": "3",
			"AUTH_FAILURE_INTERVAL": "1m", "AUTH_FAILURE_ADDRESSES": "500",
		}, check: func(t *testing.T, s config.Server) {
			t.Helper()
			require.Equal(t, []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
				netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.1.0.0/16"),
			}, s.TrustedProxies)
			require.Equal(t, 3, s.AuthFailureBurst)
			require.Equal(t, time.Minute, s.AuthFailureInterval)
			require.Equal(t, 500, s.AuthFailureAddresses)
		}},
		{name: "proxy not a cidr", env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"}, wantErr: "TRUSTED_PROXIES"},
		{name: "proxy list with a hole", env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8,,"}, wantErr: "comma-separated list of CIDRs"},
		{name: "proxy with a zone", env: map[string]string{"TRUSTED_PROXIES": "fe80::1%eth0"}, wantErr: "TRUSTED_PROXIES"},
		{name: "burst zero", env: map[string]string{"AUTH_FAILURE_BURST": "0"}, wantErr: "AUTH_FAILURE_BURST"},
		{name: "interval not a duration", env: map[string]string{"AUTH_FAILURE_INTERVAL": "6"}, wantErr: "AUTH_FAILURE_INTERVAL"},
		{name: "too few addresses", env: map[string]string{"AUTH_FAILURE_ADDRESSES": "10"}, wantErr: "from 100 to 10000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := config.LoadServer(env(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, s)
		})
	}
}

func TestWorkerSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, w config.Worker)
	}{
		{name: "values", env: map[string]string{
			"WORKER_CONCURRENCY": "8", "JOB_TIMEOUT": "2m", "LOG_LEVEL": "DEBUG", "SHUTDOWN_TIMEOUT": "3s",
			"DATABASE_URL": "postgres://db/x",
		}, check: func(t *testing.T, w config.Worker) {
			t.Helper()
			require.Equal(t, 8, w.Concurrency)
			require.Equal(t, 2*time.Minute, w.JobTimeout)
			require.Equal(t, 12*time.Minute, w.RescueAfter, "follows JOB_TIMEOUT")
			require.Equal(t, slog.LevelDebug, w.LogLevel)
			require.Equal(t, 3*time.Second, w.ShutdownTimeout)
			require.Equal(t, "postgres://db/x", w.DatabaseURL)
		}},
		{name: "metrics address", env: map[string]string{"METRICS_ADDR": "127.0.0.1:9090"}, check: func(t *testing.T, w config.Worker) {
			t.Helper()
			require.Equal(t, "127.0.0.1:9090", w.MetricsAddr)
		}},
		{name: "metrics on every interface", env: map[string]string{"METRICS_ADDR": ":0"}, check: func(t *testing.T, w config.Worker) {
			t.Helper()
			require.Equal(t, ":0", w.MetricsAddr)
		}},
		{name: "metrics address without a port", env: map[string]string{"METRICS_ADDR": "127.0.0.1"}, wantErr: "METRICS_ADDR"},
		{name: "metrics port out of range", env: map[string]string{"METRICS_ADDR": ":70000"}, wantErr: "host:port"},
		{name: "metrics port not a number", env: map[string]string{"METRICS_ADDR": "localhost:http"}, wantErr: "METRICS_ADDR"},
		{name: "concurrency not a number", env: map[string]string{"WORKER_CONCURRENCY": "many"}, wantErr: "WORKER_CONCURRENCY"},
		{name: "concurrency zero", env: map[string]string{"WORKER_CONCURRENCY": "0"}, wantErr: "from 1 to 1000"},
		{name: "bad duration", env: map[string]string{"JOB_TIMEOUT": "10"}, wantErr: "JOB_TIMEOUT"},
		{name: "bad level", env: map[string]string{"LOG_LEVEL": "loud"}, wantErr: "LOG_LEVEL"},
		{
			name: "rescue not after timeout", env: map[string]string{"JOB_TIMEOUT": "10m", "JOB_RESCUE_AFTER": "5m"},
			wantErr: "JOB_RESCUE_AFTER",
		},
		{name: "fetch defaults", env: map[string]string{}, check: func(t *testing.T, w config.Worker) {
			t.Helper()
			require.Equal(t, config.DefaultFetchCooldown, w.FetchCooldown)
			require.Equal(t, config.DefaultFetchPollInterval, w.FetchPollInterval)
		}},
		{
			name: "fetch settings", env: map[string]string{"WORKER_FETCH_COOLDOWN": "50ms", "WORKER_FETCH_POLL_INTERVAL": "2s"},
			check: func(t *testing.T, w config.Worker) {
				t.Helper()
				require.Equal(t, 50*time.Millisecond, w.FetchCooldown)
				require.Equal(t, 2*time.Second, w.FetchPollInterval)
			},
		},
		{name: "fetch cooldown under River's least", env: map[string]string{"WORKER_FETCH_COOLDOWN": "500us"}, wantErr: "WORKER_FETCH_COOLDOWN"},
		{name: "fetch cooldown not a duration", env: map[string]string{"WORKER_FETCH_COOLDOWN": "fast"}, wantErr: "WORKER_FETCH_COOLDOWN"},
		{name: "fetch cooldown too long", env: map[string]string{"WORKER_FETCH_COOLDOWN": "2m", "WORKER_FETCH_POLL_INTERVAL": "5m"}, wantErr: "from 1ms to 1m"},
		{
			name: "poll shorter than cooldown", env: map[string]string{"WORKER_FETCH_COOLDOWN": "200ms", "WORKER_FETCH_POLL_INTERVAL": "100ms"},
			wantErr: "WORKER_FETCH_POLL_INTERVAL",
		},
		{name: "poll too long", env: map[string]string{"WORKER_FETCH_POLL_INTERVAL": "2h"}, wantErr: "at most 1h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := config.LoadWorker(env(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, w)
		})
	}
}

// Every variable the processes read is documented in the operator's table.
func TestEveryVariableIsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	var missing []string
	for _, name := range config.Names() {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			missing = append(missing, name)
		}
	}
	require.Empty(t, missing, "missing from the table of docs/operations.md")
}

func TestMaxUnfinishedRuns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value   string
		want    int
		wantErr string
	}{
		{value: "", want: 50_000},
		{value: "3", want: 3},
		{value: " 1 ", want: 1},
		{value: "0", wantErr: `MAX_UNFINISHED_RUNS="0" must be a whole number from 1 to 10000000`},
		{value: "-5", wantErr: "from 1 to 10000000"},
		{value: "lots", wantErr: "MAX_UNFINISHED_RUNS"},
		{value: "10000001", wantErr: "from 1 to 10000000"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			s, err := config.LoadServer(env(map[string]string{"MAX_UNFINISHED_RUNS": tt.value}))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, s.MaxUnfinishedRuns)
		})
	}
}

func TestServerLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		want    config.HTTPLimits
	}{
		{name: "defaults", want: config.HTTPLimits{
			ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 15 * time.Second,
			IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10, MaxConnections: 1000,
			RequestTimeout: 10 * time.Second, StatementTimeout: 15 * time.Second,
		}},
		{name: "values", env: map[string]string{
			"HTTP_READ_HEADER_TIMEOUT": "1s", "HTTP_READ_TIMEOUT": "2s", "HTTP_WRITE_TIMEOUT": "4s",
			"HTTP_IDLE_TIMEOUT": "30s", "HTTP_MAX_HEADER_BYTES": "8192", "HTTP_MAX_CONNECTIONS": "50",
			"REQUEST_TIMEOUT": "3s", "DB_STATEMENT_TIMEOUT": "3s",
		}, want: config.HTTPLimits{
			ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 4 * time.Second,
			IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8192, MaxConnections: 50,
			RequestTimeout: 3 * time.Second, StatementTimeout: 3 * time.Second,
		}},
		{name: "read timeout below header timeout", env: map[string]string{
			"HTTP_READ_HEADER_TIMEOUT": "3s", "HTTP_READ_TIMEOUT": "2s",
		}, wantErr: `HTTP_READ_TIMEOUT="2s" must be at least HTTP_READ_HEADER_TIMEOUT`},
		{name: "write timeout not above the request deadline", env: map[string]string{
			"REQUEST_TIMEOUT": "15s",
		}, wantErr: `HTTP_WRITE_TIMEOUT="15s" must be longer than REQUEST_TIMEOUT`},
		{name: "statement timeout below the request deadline", env: map[string]string{
			"DB_STATEMENT_TIMEOUT": "5s",
		}, wantErr: `DB_STATEMENT_TIMEOUT="5s" must be at least REQUEST_TIMEOUT`},
		{name: "header limit too small", env: map[string]string{"HTTP_MAX_HEADER_BYTES": "100"}, wantErr: "HTTP_MAX_HEADER_BYTES"},
		{name: "header limit too large", env: map[string]string{"HTTP_MAX_HEADER_BYTES": "2000000"}, wantErr: "from 4096 to 1048576"},
		{name: "no connections", env: map[string]string{"HTTP_MAX_CONNECTIONS": "0"}, wantErr: "HTTP_MAX_CONNECTIONS"},
		{name: "zero timeout", env: map[string]string{"HTTP_IDLE_TIMEOUT": "0s"}, wantErr: "HTTP_IDLE_TIMEOUT"},
		{name: "bad deadline", env: map[string]string{"REQUEST_TIMEOUT": "soon"}, wantErr: "REQUEST_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := config.LoadServer(env(tt.env))
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, s.Limits)
		})
	}
}

// Names lists each variable once, and every variable the operations guide
// documents is one the processes read.
func TestNamesAreListedOnce(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, n := range config.Names() {
		require.False(t, seen[n], "%s is listed twice", n)
		seen[n] = true
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	require.NoError(t, err)
	for n := range seen {
		require.Contains(t, string(doc), "`"+n+"`", "docs/operations.md documents %s", n)
	}
}
