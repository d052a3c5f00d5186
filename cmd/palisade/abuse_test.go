package main

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/pkg/api"
)

// gzipBomb is a valid gzip stream of prefix followed by n MiB of "a",
// built from one compressed block repeated (about 1 KB per MiB).
func gzipBomb(prefix []byte, n int) []byte {
	var out bytes.Buffer
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	fw, _ := flate.NewWriter(&out, flate.BestCompression)
	fw.Write(prefix)
	fw.Flush()
	var blk bytes.Buffer
	bw, _ := flate.NewWriter(&blk, flate.BestCompression)
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	bw.Write(chunk)
	bw.Flush()
	crc := crc32.ChecksumIEEE(prefix)
	for range n {
		out.Write(blk.Bytes())
		crc = crc32.Update(crc, crc32.IEEETable, chunk)
	}
	out.Write([]byte{0x03, 0x00}) // final empty block
	binary.Write(&out, binary.LittleEndian, crc)
	binary.Write(&out, binary.LittleEndian, uint32(int64(len(prefix))+int64(n)<<20))
	return out.Bytes()
}

// procKB reads a VmRSS/VmHWM-style field of /proc/PID/status in KiB.
func procKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestAbuse: hostile requests against a `palisade server` process, each
// answered with a 4xx and a clear message in the API's error shape, the
// server answering /healthz within 200 ms after (and during) each; a 2 GB
// gzip bomb costs less than 300 MB of memory; reads of random agent names
// add no state; a Slowloris client is cut.
func TestAbuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
	defer p.stop(t, syscall.SIGTERM)
	l := p.line(t, "listening on", 60*time.Second)
	base := strings.TrimSpace(l[strings.LastIndex(l, " "):])
	admin := dataDirClient(t, base, dir, "admin-token")
	hc := admin.HTTPClient()
	adminTok, _ := os.ReadFile(filepath.Join(dir, "admin-token"))
	agentC, _ := enrolledAgent(t, base, dir, "n1")
	pid := p.cmd.Process.Pid

	healthy := func(t *testing.T, what string) {
		t.Helper()
		start := time.Now()
		resp, err := hc.Get(base + "/healthz")
		if err != nil {
			t.Fatalf("after %s: /healthz: %v", what, err)
		}
		resp.Body.Close()
		if d := time.Since(start); resp.StatusCode != 200 || d > 200*time.Millisecond {
			t.Fatalf("after %s: /healthz %d in %v", what, resp.StatusCode, d)
		}
	}
	send := func(t *testing.T, method, path string, body io.Reader, hdr map[string]string) (int, api.Error) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, body)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminTok)))
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range hdr {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var e api.Error
		data, _ := io.ReadAll(resp.Body)
		json.Unmarshal(data, &e)
		return resp.StatusCode, e
	}
	healthy(t, "start")
	t.Run("plain HTTP is refused", func(t *testing.T) {
		if !strings.HasPrefix(base, "https://") {
			t.Fatalf("the server serves %s", base)
		}
		resp, err := http.Get("http://" + strings.TrimPrefix(base, "https://") + "/api/v1/status")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("plain HTTP: %d", resp.StatusCode)
		}
		if _, err := http.Get(base + "/healthz"); err == nil {
			t.Fatal("an HTTPS client without the CA trusted the server")
		}
	})

	ips := make([]string, 5000)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	for _, c := range []struct {
		name, method, path string
		body               []byte
		hdr                map[string]string
		status             int
		msg                string
	}{
		{"3 MB body on a small endpoint", "POST", "/api/v1/filters", bytes.Repeat([]byte(" "), 3<<20), nil, 413, "limit"},
		{"text/plain POST", "POST", "/api/v1/filters", []byte(`{"name":"csrf","filter":"kind = pod"}`), map[string]string{"Content-Type": "text/plain"}, 415, "application/json"},
		{"70 KB filter", "GET", "/api/v1/inventory?filter=" + url.QueryEscape(strings.Repeat("kind = pod or ", 5000)+"kind = pod"), nil, nil, 400, "limit is 65536"},
		{"101 nested parentheses", "GET", "/api/v1/inventory?filter=" + url.QueryEscape(strings.Repeat("(", 101)+"kind = pod"+strings.Repeat(")", 101)), nil, nil, 400, "nested too deeply"},
		{"60 KB ip list", "GET", "/api/v1/flows?filter=" + url.QueryEscape("src.ip in ("+strings.Join(ips, ", ")+")"), nil, nil, 400, "conditions"},
		{"limit=-1", "GET", "/api/v1/inventory?limit=-1", nil, nil, 400, "limit"},
		{"limit=100000000", "GET", "/api/v1/flows?limit=100000000", nil, nil, 400, "limit"},
		{"from=NaN", "GET", "/api/v1/flows?from=NaN", nil, nil, 400, "from"},
		{"n=-5", "GET", "/api/v1/flows/top?by=dst.port&n=-5", nil, nil, 400, "n"},
		{"wrong Host (DNS rebinding)", "GET", "/api/v1/inventory", nil, map[string]string{"Host": "evil.example:7070"}, 421, "not a name of this server"},
		{"huge regexp", "GET", "/api/v1/inventory?filter=" + url.QueryEscape(`name matches "(abcdefghij|klmnopqrst|uvwxyzabcd){1000}"`), nil, nil, 400, "too complex"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var body io.Reader
			if c.body != nil {
				body = bytes.NewReader(c.body)
			}
			code, e := send(t, c.method, c.path, body, c.hdr)
			if code != c.status || !strings.Contains(e.Message, c.msg) {
				t.Fatalf("%d %+v, want %d mentioning %q", code, e, c.status, c.msg)
			}
			healthy(t, c.name)
		})
	}
	t.Run("nothing was created", func(t *testing.T) {
		fs, err := admin.Filters(context.Background())
		if err != nil || len(fs) != 0 {
			t.Fatalf("filters: %v %v", fs, err)
		}
	})

	t.Run("2 GB gzip bomb as a flow batch", func(t *testing.T) {
		bomb := gzipBomb([]byte(`{"agent":"`), 2048)
		before := procKB(t, pid, "VmRSS")
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest("POST", base+"/api/v1/agents/n1/flows", bytes.NewReader(bomb))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Content-Encoding", "gzip")
			resp, err := agentC.HTTPClient().Do(req) // mTLS: the agent's certificate
			if err != nil {
				t.Errorf("bomb: %v", err)
				return
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || !strings.Contains(string(data), "larger than") {
				t.Errorf("bomb: %d %s", resp.StatusCode, data)
			}
		}()
		var peak int64
		for running := true; running; {
			select {
			case <-done:
				running = false
			case <-time.After(20 * time.Millisecond):
				peak = max(peak, procKB(t, pid, "VmRSS"))
				healthy(t, "during the bomb")
			}
		}
		peak = max(peak, procKB(t, pid, "VmRSS"))
		t.Logf("RSS %d MiB before, peak %d MiB during the bomb (VmHWM %d MiB)", before>>10, peak>>10, procKB(t, pid, "VmHWM")>>10)
		if peak-before > 300<<10 {
			t.Fatalf("the bomb cost %d MiB", (peak-before)>>10)
		}
		healthy(t, "the bomb")
	})

	t.Run("100,000 reads of random agent names", func(t *testing.T) {
		agents, err := admin.Agents(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		bad := 0
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 100000 / 8 {
					b := make([]byte, 8)
					rand.Read(b)
					req, _ := http.NewRequest("GET", base+"/api/v1/agents/"+hex.EncodeToString(b)+"/config", nil)
					req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(adminTok)))
					resp, err := hc.Do(req)
					if err != nil {
						mu.Lock()
						bad++
						mu.Unlock()
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 && i%1000 == 0 {
						t.Errorf("worker %d: %d", w, resp.StatusCode)
					}
				}
			}()
		}
		wg.Wait()
		after, err := admin.Agents(context.Background())
		if err != nil || bad > 0 || len(after.Agents) != len(agents.Agents) {
			t.Fatalf("agents %d → %d (%v), %d failed requests", len(agents.Agents), len(after.Agents), err, bad)
		}
		healthy(t, "100,000 reads")
	})

	t.Run("Slowloris", func(t *testing.T) {
		u, _ := url.Parse(base)
		raw, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		// Over TLS, as the server serves: the handshake completes, then the
		// request's header trickles in a byte a second.
		tc := hc.Transport.(*http.Transport).TLSClientConfig.Clone()
		tc.ServerName = u.Hostname()
		conn := tls.Client(raw, tc)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := conn.Handshake(); err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Time{})
		defer conn.Close()
		start := time.Now()
		header := "GET /healthz HTTP/1.1\r\nHost: " + u.Host + "\r\nX-Slow: "
		closed := make(chan time.Duration, 1)
		go func() {
			buf := make([]byte, 512)
			for {
				if _, err := conn.Read(buf); err != nil {
					closed <- time.Since(start)
					return
				}
			}
		}()
		for i := 0; ; i++ {
			select {
			case d := <-closed:
				t.Logf("Slowloris cut after %v", d.Round(time.Millisecond))
				if d > 60*time.Second {
					t.Fatalf("cut after %v", d)
				}
				healthy(t, "Slowloris")
				return
			case <-time.After(time.Second):
			}
			if time.Since(start) > 70*time.Second {
				t.Fatal("a Slowloris client is still connected after 70 s")
			}
			if i < len(header) {
				conn.Write([]byte{header[i]})
			} else {
				conn.Write([]byte("a"))
			}
		}
	})
}
