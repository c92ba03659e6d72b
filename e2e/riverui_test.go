package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/backtestd/backtestd/internal/obs"
)

var screenshot = flag.String("screenshot", "", "write River UI's page of the finished job to this PNG file")

// findBrowser finds Chromium (CHROMIUM_BIN, else the usual names).
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM_BIN"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the River UI test needs Chromium: apt-get install chromium (or set CHROMIUM_BIN)")
	return ""
}

// An operator opens a finished run's job in River UI, in a real browser, and
// sees the correlation ID of the request that created it.
func TestRiverUIShowsTheJobsCorrelationID(t *testing.T) {
	t.Parallel()
	browser := findBrowser(t)
	const user, password = "ops", "s3cret operator pass"
	st := newStack(t, "RIVERUI_USER="+user, "RIVERUI_PASSWORD="+password)
	require.Equal(t, true, st.server.waitFor(t, obs.EventServerStarted)[obs.KeyRiverUI])

	strategy := st.api.createStrategy(t, 5, 20)
	const correlationID = "ui-bug-4242"
	resp, body := st.api.do(t, http.MethodPost, "/backtests", correlationID, map[string]any{
		"strategy_id": strategy, "symbol": "ACME", "start": "2025-01-01", "end": "2025-07-01", "initial_cash": 10000,
	})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	runID, _ := body["run_id"].(string)
	require.Equal(t, "succeeded", st.api.waitFinished(t, runID)["status"])
	var jobID float64
	for _, l := range st.server.lines(t) {
		if l[obs.KeyEvent] == obs.EventBacktestEnqueued && l[obs.KeyRunID] == runID {
			jobID, _ = l[obs.KeyJobID].(float64)
		}
	}
	require.NotZero(t, jobID, "backtest_enqueued names the job")
	jobURL := fmt.Sprintf("%s/riverui/jobs/%d", st.api.base, int64(jobID))

	// Without the operator's credentials, nothing.
	for _, auth := range []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":wrong"))} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, jobURL, nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		r, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		require.NoError(t, r.Body.Close())
		require.Equal(t, http.StatusUnauthorized, r.StatusCode)
		require.Contains(t, r.Header.Get("WWW-Authenticate"), "Basic")
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1400, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	credentials := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	require.NoError(t, chromedp.Do(ctx), "start the browser")
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + credentials},
	})
	require.NoError(t, err)
	// The args are rendered by the UI's JavaScript from River's API.
	err = chromedp.Do(ctx,
		chromedp.Navigate(jobURL),
		chromedp.WaitVisible(chromedp.Search(`//*[contains(text(), "`+correlationID+`")]`)),
	)
	require.NoError(t, err, "the job page did not show %s", correlationID)
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	require.NoError(t, err)
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.Contains(t, text, "correlation_id")
	require.Contains(t, text, correlationID)
	require.Contains(t, text, runID, "the args show the run too")

	img, err := png.Decode(bytes.NewReader(shot))
	require.NoError(t, err, "the screenshot is a PNG")
	require.Greater(t, img.Bounds().Dx(), 500)
	if *screenshot != "" {
		require.NoError(t, os.WriteFile(*screenshot, shot, 0o600))
	}
	require.NotContains(t, text, password, "the page never shows the password")
}
