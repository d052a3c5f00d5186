// Package browsertest drives Debian's headless Chromium (installed by
// scripts/ensure-deps.sh) through chromedp for the console's end-to-end
// tests and benchmarks: no Node at test time. A Page records every console
// error, uncaught exception, failed request and HTTP error the console
// causes, so tests can require a clean load.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/systeminfo"
	"github.com/chromedp/chromedp"
)

// Width and Height: the console must be usable at 1280×800.
const Width, Height = 1280, 800

// Browser is one headless Chromium with a fresh profile.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Executable finds Chromium: $CHROMIUM, or Debian's chromium.
func Executable() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p, nil
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Chromium found (set CHROMIUM or install Debian's chromium: bash scripts/ensure-deps.sh)")
}

// Start launches Chromium; it stops with the test. A missing Chromium
// fails the test (never skips).
func Start(t testing.TB) *Browser {
	t.Helper()
	exe, err := Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		// The server's certificate is from its own CA (issue 11: TLS by
		// default); the browser is only ever pointed at it.
		chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(Width, Height),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		acancel()
		t.Fatalf("start Chromium (%s): %v", exe, err)
	}
	b := &Browser{ctx: ctx, cancel: func() { cancel(); acancel() }}
	t.Cleanup(b.cancel)
	return b
}

// Page is one tab. Problems collects what went wrong in it.
type Page struct {
	t   testing.TB
	Ctx context.Context

	mu       sync.Mutex
	problems []string
	// Dialogs are the messages of the confirmations the page asked (all
	// accepted).
	Dialogs []string
	allowed []*regexp.Regexp
	urls    map[network.RequestID]string
}

// NewPage opens a tab with a 1280×800 viewport.
func (b *Browser) NewPage(t testing.TB) *Page {
	t.Helper()
	p := &Page{t: t, urls: map[network.RequestID]string{}}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithListener(p.onEvent))
	t.Cleanup(cancel)
	p.Ctx = ctx
	enable := chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := chromedp.Call(ctx, log.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{})
		return err
	})
	if err := chromedp.Do(ctx, enable, chromedp.EmulateViewport(Width, Height)); err != nil {
		t.Fatalf("new page: %v", err)
	}
	return p
}

func (p *Page) onEvent(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg = "exception: " + e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert || e.Type == runtime.ConsoleAPICalledTypeWarning {
			var parts []string
			for _, a := range e.Args {
				if a.Value != nil {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			msg = "console." + string(e.Type) + ": " + strings.Join(parts, " ")
		}
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
			msg = fmt.Sprintf("log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	case *page.EventJavascriptDialogOpening:
		// A confirmation ("Enforce scope …?") is accepted, as a person
		// going on with the step would. Commands may not run inside a
		// listener: answer from another goroutine.
		p.mu.Lock()
		p.Dialogs = append(p.Dialogs, e.Message)
		p.mu.Unlock()
		go chromedp.Call(p.Ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}) //nolint:errcheck // the step waits for its effect
		return
	case *network.EventRequestWillBeSent:
		p.mu.Lock()
		p.urls[e.RequestID] = e.Request.URL
		p.mu.Unlock()
	case *network.EventLoadingFailed:
		if e.Canceled {
			return // navigation away from a page cancels its requests
		}
		p.mu.Lock()
		u := p.urls[e.RequestID]
		p.mu.Unlock()
		msg = fmt.Sprintf("request failed: %s %s %s", u, e.ErrorText, e.BlockedReason)
	case *network.EventResponseReceived:
		if e.Response.Status >= 400 {
			msg = fmt.Sprintf("HTTP %d: %s", int(e.Response.Status), e.Response.URL)
		}
	}
	if msg == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, re := range p.allowed {
		if re.MatchString(msg) {
			return
		}
	}
	p.problems = append(p.problems, msg)
}

// Allow ignores problems matching re from now on (an expected 400 for an
// invalid filter, say).
func (p *Page) Allow(re string) {
	p.mu.Lock()
	p.allowed = append(p.allowed, regexp.MustCompile(re))
	p.mu.Unlock()
}

// Problems returns and clears what went wrong so far.
func (p *Page) Problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.problems
	p.problems = nil
	return out
}

// Clean fails the test if anything went wrong on the page (what names the step).
func (p *Page) Clean(what string) {
	p.t.Helper()
	if pr := p.Problems(); len(pr) > 0 {
		p.t.Errorf("%s: %d console errors or failed requests:\n  %s", what, len(pr), strings.Join(pr, "\n  "))
	}
}

// Do runs chromedp actions with a timeout, failing the test on error.
func (p *Page) Do(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail(what, err)
	}
}

func (p *Page) fail(what string, err error) {
	p.t.Helper()
	body, _ := chromedp.Run(p.Ctx, chromedp.Evaluate[string](`document.querySelector("main")?.innerText?.slice(0, 2000) ?? ""`))
	p.t.Fatalf("%s: %v\npage shows:\n%s\nproblems so far: %v", what, err, body, p.Problems())
}

// Run runs one action returning a value, failing the test on error.
func Run[T any](p *Page, what string, timeout time.Duration, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.fail(what, err)
	}
	return v
}

// Eval evaluates JavaScript and returns its result.
func Eval[T any](p *Page, js string) T {
	p.t.Helper()
	return Run(p, "evaluate "+js, 10*time.Second, chromedp.Evaluate[T](js))
}

// WaitFor polls a JavaScript condition until it holds.
func (p *Page) WaitFor(what, js string, timeout time.Duration) {
	p.t.Helper()
	Run(p, what, timeout, chromedp.Poll[any](js, chromedp.WithPollingInterval(100*time.Millisecond)))
}

// Open navigates to url and waits for the console to render its page.
func (p *Page) Open(url string) {
	p.t.Helper()
	p.Do("open "+url, 30*time.Second, chromedp.Navigate(url))
	p.WaitFor("console rendered", `document.querySelector("main h1") !== null`, 20*time.Second)
}

// ArtifactDir is test-artifacts/console at the module root (ignored by git).
func ArtifactDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "test-artifacts", "console")
	return out, os.MkdirAll(out, 0o755)
}

// Screenshot writes the viewport (1280×800) to test-artifacts/console/NAME.png.
func (p *Page) Screenshot(name string) string {
	p.t.Helper()
	dir, err := ArtifactDir()
	if err != nil {
		p.t.Fatal(err)
	}
	png := Run(p, "screenshot "+name, 20*time.Second, chromedp.CaptureScreenshot())
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// SignIn signs in through the console's sign-in page with an API token
// (kept by the console in this tab's sessionStorage), and waits for the
// inventory page it returns to.
func (p *Page) SignIn(base, token string) {
	p.t.Helper()
	// Reload: from another page of the console the navigation would only
	// change the fragment and keep what the form holds.
	p.Do("open sign-in", 30*time.Second, chromedp.Navigate(base+"/#/signin"), chromedp.Reload())
	p.Do("sign in", 20*time.Second,
		chromedp.WaitVisible(`[data-testid=token-input]`),
		chromedp.SendKeys(`[data-testid=token-input]`, token+"\r"))
	p.WaitFor("signed in", `location.hash === "#/inventory" && document.querySelector("[data-testid=inventory-table]") !== null`, 20*time.Second)
}

// CPU is the CPU time each process of the browser (browser, GPU,
// renderers, utilities) has used since it started, by process ID.
type CPU map[int64]time.Duration

// CPU returns the browser's CPU time per process. On a loaded machine CPU
// times, unlike wall times, do not grow with the number of processes
// waiting for a core: benchmarks report both. (A renderer's own metrics,
// Performance.getMetrics, do not do: a navigation may move the page to a
// new renderer process.)
func (p *Page) CPU() CPU {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 20*time.Second)
	defer cancel()
	res, err := chromedp.CallBrowser(ctx, systeminfo.GetProcessInfo, cdp.Empty{})
	if err != nil {
		p.fail("browser process CPU times", err)
	}
	out := CPU{}
	for _, pi := range res.ProcessInfo {
		out[pi.ID] = time.Duration(pi.CPUTime * float64(time.Second))
	}
	return out
}

// Since is the CPU time the browser's processes used between before and
// c (processes started since count whole; those that ended meanwhile are
// not counted after before).
func (c CPU) Since(before CPU) time.Duration {
	var d time.Duration
	for id, t := range c {
		d += t - before[id]
	}
	return d
}
