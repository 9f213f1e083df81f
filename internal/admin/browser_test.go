package admin

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// chromiumPath is Debian's chromium package; CHROMIUM overrides it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found and CI is set: the browser test must run in CI (apt-get install chromium)")
	}
	t.Skip("chromium not found: apt-get install chromium (or set CHROMIUM) to run the browser test; it is required when CI is set")
	return ""
}

// TestMonitoringBrowser opens /monitoring/ in a real headless Chromium,
// through basic auth, and waits for asynqmon to list the orders queue of a
// private redis-server. The screenshot is kept as a test artifact.
func TestMonitoringBrowser(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)

	r, db, _ := testsvc.RedisDB(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr, DB: db}
	client := asynq.NewClient(opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("order:place", []byte(`{"order_id":"o-1"}`)), asynq.Queue("orders"), asynq.TaskID("o-1")); err != nil {
		t.Fatal(err)
	}
	b := start(t, Config{User: "ops", Password: "s3cret", RedisConnOpt: opt})

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()

	// The first Run starts the browser and must not carry a timeout (it
	// would stop the browser); later steps get one through stepCtx.
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret"))
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		// The header reaches asynqmon's API calls too, not just the page.
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Authorization": auth},
		})
		return err
	})); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	stepCtx, cancelStep := context.WithTimeout(ctx, 60*time.Second)
	defer cancelStep()

	if err := chromedp.Do(stepCtx, chromedp.Navigate(b.base+"/monitoring/")); err != nil {
		t.Fatalf("navigate to /monitoring/: %v", err)
	}
	// asynqmon renders client side and fills the queue table from its API.
	if _, err := chromedp.Run(stepCtx, chromedp.Poll[bool](
		`[...document.querySelectorAll("td, th, a")].some(e => e.textContent.trim() === "orders")`,
		chromedp.WithPollingTimeout(30*time.Second),
	)); err != nil {
		text, _ := chromedp.Run(stepCtx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("waiting for the orders queue in /monitoring/: %v\npage text:\n%s", err, text)
	}
	title, err := chromedp.Run(stepCtx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(stepCtx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("page title %q, screenshot %d bytes", title, len(png))

	dir := filepath.Join(testsvc.RepoRoot(t), "artifacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "monitoring.png"), filepath.Join(t.TempDir(), "monitoring.png")} {
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", p)
	}
}
