package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

var badKeyBurst = flag.Int("badkey-burst", 400,
	"unknown-key requests TestBadKeyBurstIsLimited sends (docs/reliability.md's figure uses 5000)")

// send makes one request with the given headers and returns the response
// with its body read.
func send(t *testing.T, method, url string, header map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := checkedClient(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, raw
}

// requireLimited checks a 429 problem with its Retry-After.
func requireLimited(t *testing.T, resp *http.Response, raw []byte, maxRetryAfter int) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", raw)
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After is whole seconds")
	require.Positive(t, secs)
	require.LessOrEqual(t, secs, maxRetryAfter)
	var p map[string]any
	require.NoError(t, json.Unmarshal(raw, &p))
	require.Equal(t, resp.Header.Get("X-Correlation-ID"), p["correlation_id"])
}

// An attacker behind a trusted proxy sprays unknown API keys: past its
// budget it gets 429s with Retry-After, answered without the database,
// while a valid key from the same address keeps being served.
func TestBadKeyBurstIsLimited(t *testing.T) {
	t.Parallel()
	const (
		budget   = 20
		attacker = "198.51.100.7"
		conns    = 8
		rounds   = 5
	)
	var px *proxy
	st := newStackWith(t, stackOptions{
		env: []string{
			"TRUSTED_PROXIES=127.0.0.1/32", "AUTH_FAILURE_BURST=" + strconv.Itoa(budget), "AUTH_FAILURE_INTERVAL=1h",
		},
		via: func(dbURL string) string {
			u, err := url.Parse(dbURL)
			require.NoError(t, err)
			px = newProxy(t, u.Host)
			return px.via(dbURL)
		},
	})
	base := st.api.base
	asAttacker := func(key string) map[string]string {
		return map[string]string{
			"Authorization": "Bearer " + key, "X-Forwarded-For": attacker, "Content-Type": "application/json",
		}
	}
	// The valid key is used once before the attack, as a client does.
	resp, raw := send(t, http.MethodPost, base+"/strategies", asAttacker(st.api.key),
		`{"kind":"sma_crossover","params":{"fast_window":5,"slow_window":20}}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", raw)
	var strategy struct{ ID string }
	require.NoError(t, json.Unmarshal(raw, &strategy))
	valid, err := json.Marshal(backtestBody(strategy.ID, "ACME"))
	require.NoError(t, err)

	// One keep-alive connection per client, as a scripted attacker would.
	badKey := asAttacker("bt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	clients := make([]*http.Client, conns)
	for i := range clients {
		tr := &http.Transport{MaxConnsPerHost: 1}
		t.Cleanup(tr.CloseIdleConnections)
		clients[i] = &http.Client{Transport: checkedTransport(t, tr)}
	}
	perConn := max(1, *badKeyBurst/(conns*rounds))
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		served   int
	)
	started := time.Now()
	for range rounds {
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() {
				got := map[int]int{}
				for range perConn {
					req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/backtests", nil)
					if err != nil {
						got[0]++
						continue
					}
					for k, v := range badKey {
						req.Header.Set(k, v)
					}
					resp, err := c.Do(req)
					if err != nil {
						got[0]++
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					got[resp.StatusCode]++
				}
				mu.Lock()
				defer mu.Unlock()
				for s, n := range got {
					statuses[s] += n
				}
			})
		}
		wg.Wait()
		// Between the waves, the valid key from the same address.
		resp, raw := send(t, http.MethodPost, base+"/backtests", asAttacker(st.api.key), string(valid))
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", raw)
		var run struct {
			RunID string `json:"run_id"`
		}
		require.NoError(t, json.Unmarshal(raw, &run))
		resp, raw = send(t, http.MethodGet, base+"/backtests/"+run.RunID, asAttacker(st.api.key), "")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
		served += 2
	}
	elapsed := time.Since(started)
	sent := conns * rounds * perConn
	require.Equal(t, map[int]int{http.StatusUnauthorized: budget, http.StatusTooManyRequests: sent - budget}, statuses)

	resp, raw = send(t, http.MethodGet, base+"/backtests", asAttacker("bt_another-guess"), "")
	requireLimited(t, resp, raw, 3600)

	// With the database cut, a limited address is still answered 429: no
	// query stood behind it. A fresh address needs the query, and gets 503.
	px.cut()
	resp, raw = send(t, http.MethodGet, base+"/backtests", asAttacker("bt_during-the-outage"), "")
	requireLimited(t, resp, raw, 3600)
	resp, raw = send(t, http.MethodGet, base+"/backtests", map[string]string{
		"Authorization": "Bearer bt_during-the-outage", "X-Forwarded-For": "198.51.100.8",
	}, "")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", raw)
	px.restore()

	// client_ip: the X-Forwarded-For client behind the trusted proxy, the
	// rightmost untrusted entry of a forged chain, the peer without the
	// header.
	for _, tc := range []struct{ correlationID, forwardedFor string }{
		{"xff-none", ""}, {"xff-forged", "6.6.6.6, 198.51.100.9"},
	} {
		h := map[string]string{"X-Correlation-ID": tc.correlationID}
		if tc.forwardedFor != "" {
			h["X-Forwarded-For"] = tc.forwardedFor
		}
		resp, _ := send(t, http.MethodGet, base+"/healthz", h, "")
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	st.server.stop(t)
	st.worker.stop(t)
	requireSchema(t, st.server.rawLines(t))
	limited, byAddr := 0, map[string]string{}
	for _, l := range st.server.lines(t) {
		if l[obs.KeyEvent] != obs.EventRequestFinished {
			continue
		}
		ip, _ := l[obs.KeyClientIP].(string)
		require.NotEmpty(t, ip, "every access line has client_ip: %v", l)
		if cid, _ := l[obs.KeyCorrelationID].(string); strings.HasPrefix(cid, "xff-") {
			byAddr[cid] = ip
		}
		if l[obs.KeyStatusCode] == float64(http.StatusTooManyRequests) {
			limited++
			require.Equal(t, attacker, ip)
			require.Equal(t, "info", l[obs.KeyLevel])
		}
	}
	require.Equal(t, sent-budget+2, limited, "one access line per 429")
	require.Equal(t, map[string]string{"xff-none": "127.0.0.1", "xff-forged": "198.51.100.9"}, byAddr)
	t.Logf("%d unknown-key requests on %d connections in %v (%.0f/s): %d answered 401, %d answered 429; "+
		"%d valid-key requests from the same address between the waves, all served",
		sent, conns, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(),
		statuses[http.StatusUnauthorized], statuses[http.StatusTooManyRequests], served)
}

// A page an operator visits cannot make the browser cancel or delete jobs
// in River UI; password guesses are limited; River UI's lines and the
// access lines never carry the credentials; without TRUSTED_PROXIES,
// X-Forwarded-For changes nothing.
func TestRiverUIRefusesCrossSiteWritesAndLimitsGuesses(t *testing.T) {
	t.Parallel()
	const user, password = "ops", "an operator's long password"
	st := newStack(t, "RIVERUI_USER="+user, "RIVERUI_PASSWORD="+password,
		"AUTH_FAILURE_BURST=3", "AUTH_FAILURE_INTERVAL=1h")
	require.Equal(t, true, st.server.waitFor(t, obs.EventServerStarted)[obs.KeyRiverUI])
	st.worker.stop(t) // the jobs stay in the queue, to be cancelled or deleted
	strategy := st.api.createStrategy(t, 5, 20)
	jobs := make([]int64, 2)
	for i := range jobs {
		resp, body := st.api.do(t, http.MethodPost, "/backtests", "", backtestBody(strategy, "ACME"))
		require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
		runID, _ := body["run_id"].(string)
		jobs[i] = jobOf(t, st, runID)
	}
	state := func(id int64) string {
		conn, err := pgx.Connect(t.Context(), st.dbURL)
		require.NoError(t, err)
		defer conn.Close(t.Context())
		var s string
		err = conn.QueryRow(t.Context(), `SELECT state FROM river_job WHERE id = $1`, id).Scan(&s)
		if errors.Is(err, pgx.ErrNoRows) {
			return "deleted"
		}
		require.NoError(t, err)
		return s
	}
	credentials := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
	ids := func(id int64) string { return `{"ids":["` + strconv.FormatInt(id, 10) + `"]}` }

	// The attack: a form on another site posts text/plain, and the browser
	// adds the operator's saved credentials.
	for _, action := range []string{"cancel", "delete"} {
		resp, raw := send(t, http.MethodPost, st.api.base+"/riverui/api/jobs/"+action, map[string]string{
			"Authorization": credentials, "Content-Type": "text/plain",
			"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site",
		}, ids(jobs[0]))
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", action, raw)
		require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	}
	require.Equal(t, "available", state(jobs[0]), "nothing was cancelled or deleted")

	// The same text/plain request from a client that is not a browser (no
	// Origin, no Sec-Fetch-Site) is River UI's to take: it does, so the 403
	// above is what kept the job.
	resp, raw := send(t, http.MethodPost, st.api.base+"/riverui/api/jobs/cancel", map[string]string{
		"Authorization": credentials, "Content-Type": "text/plain",
	}, ids(jobs[0]))
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
	require.Equal(t, "cancelled", state(jobs[0]))
	// River UI's own page: a same-origin request.
	resp, raw = send(t, http.MethodPost, st.api.base+"/riverui/api/jobs/delete", map[string]string{
		"Authorization": credentials, "Content-Type": "application/json",
		"Origin": st.api.base, "Sec-Fetch-Site": "same-origin",
	}, ids(jobs[0]))
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", raw)
	require.Equal(t, "deleted", state(jobs[0]))
	require.Equal(t, "available", state(jobs[1]))

	// Guesses: 3 wrong passwords are answered 401, then 429, even for the
	// right one; X-Forwarded-For from an untrusted peer does not help.
	guess := func(pass, forwardedFor string) (*http.Response, []byte) {
		h := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
		if forwardedFor != "" {
			h["X-Forwarded-For"] = forwardedFor
		}
		return send(t, http.MethodGet, st.api.base+"/riverui/api/jobs?state=available", h, "")
	}
	for i := range 3 {
		resp, _ := guess("guess-"+strconv.Itoa(i), "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	}
	resp, raw = guess("guess-3", "")
	requireLimited(t, resp, raw, 3600)
	resp, raw = guess(password, "")
	requireLimited(t, resp, raw, 3600)
	resp, raw = guess("guess-4", "203.0.113.77")
	requireLimited(t, resp, raw, 3600)

	st.server.stop(t)
	requireSchema(t, st.server.rawLines(t))
	for _, l := range st.server.lines(t) {
		if l[obs.KeyEvent] == obs.EventRequestFinished {
			require.Equal(t, "127.0.0.1", l[obs.KeyClientIP], "no trusted proxy: the peer, whatever the header says")
		}
	}
	out := string(readAll(t, st.server.stdout))
	for _, secret := range []string{password, credentials, strings.TrimPrefix(credentials, "Basic "), "guess-", "Basic "} {
		require.NotContains(t, out, secret, "credentials never reach the logs")
	}
	require.NotContains(t, strings.ToLower(out), "authorization")
}

// jobOf waits for the backtest_enqueued line of a run and returns its job.
func jobOf(t *testing.T, st *stack, runID string) int64 {
	t.Helper()
	l := st.server.waitLine(t, 30*time.Second, "backtest_enqueued of run "+runID, func(l map[string]any) bool {
		return l[obs.KeyEvent] == obs.EventBacktestEnqueued && l[obs.KeyRunID] == runID
	})
	id, _ := l[obs.KeyJobID].(float64)
	return int64(id)
}

// A River UI password shorter than 12 characters stops the server at start,
// with an error that names the variable but not the password.
func TestShortRiverUIPasswordIsRefusedAtStart(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := binary(ctx, t, "server", []string{"HTTP_ADDR=127.0.0.1:0", "RIVERUI_USER=ops", "RIVERUI_PASSWORD=hunter2"})
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the server must not start")
	require.Equal(t, 1, exit.ExitCode())
	require.Equal(t, "server: RIVERUI_PASSWORD must be at least 12 characters long (it has 7)\n", stderr.String())
	require.Empty(t, stdout.String(), "nothing was served, nothing logged")
}
