package app

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/netns"
)

// Server serves HTTP on TCP ports inside one network namespace (a pod or the
// external host). The listening sockets are created inside the namespace and
// stay there; the accepting goroutines run anywhere.
type Server struct {
	mu        sync.Mutex
	listeners []net.Listener
	servers   []*http.Server
}

// Listen opens a TCP listener on each port inside the namespace at nsPath
// and answers every HTTP request with a line naming who answered.
func Listen(nsPath, who string, ports []int32) (*Server, error) {
	s := &Server{}
	var lns []net.Listener
	err := netns.Do(nsPath, func() error {
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, fmt.Errorf("listen in %s: %w", nsPath, err)
	}
	for i, ln := range lns {
		port := ports[i]
		srv := &http.Server{
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       5 * time.Second,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s port %d from %s\n", who, port, r.RemoteAddr)
			}),
		}
		s.listeners = append(s.listeners, ln)
		s.servers = append(s.servers, srv)
		go func() { _ = srv.Serve(ln) }()
	}
	return s, nil
}

// Close stops serving and closes the sockets, releasing the namespace.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.servers, s.listeners = nil, nil
	return errors.Join(errs...)
}

// Dial opens a TCP connection from inside the namespace at nsPath. If
// localIP is set the connection is bound to it (a kubelet probe from the
// node IP).
func Dial(nsPath, localIP, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(nsPath, func() error {
		d := net.Dialer{Timeout: timeout}
		if localIP != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
		}
		var err error
		conn, err = d.Dial("tcp", addr)
		return err
	})
	return conn, err
}

// Get makes one HTTP/1.1 request on its own connection from inside the
// namespace at nsPath and returns the answer's body, which names the pod and
// port that answered.
func Get(nsPath, addr string, timeout time.Duration) (string, error) {
	conn, err := Dial(nsPath, "", addr, timeout)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		return "", err
	}
	resp, err := io.ReadAll(io.LimitReader(conn, 4096))
	if err != nil && len(resp) == 0 {
		return "", err
	}
	head, body, _ := strings.Cut(string(resp), "\r\n\r\n")
	if status, _, _ := strings.Cut(head, "\r\n"); status != "HTTP/1.1 200 OK" {
		return "", fmt.Errorf("unexpected answer %q from %s", status, addr)
	}
	return strings.TrimSpace(body), nil
}
