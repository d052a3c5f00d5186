package app

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/netns"
)

// Server serves HTTP on TCP ports and answers datagrams on UDP ports inside
// one network namespace (a pod or the external host). The sockets are
// created inside the namespace and stay there; the serving goroutines run
// anywhere.
type Server struct {
	mu        sync.Mutex
	listeners []net.Listener
	servers   []*http.Server
	udp       []net.PacketConn
}

// Listen opens a TCP listener on each port inside the namespace at nsPath
// and answers every HTTP request with a line naming who answered.
func Listen(nsPath, who string, ports []int32) (*Server, error) {
	return ListenPorts(nsPath, who, ports, nil)
}

// ListenPorts is Listen plus UDP: each datagram to a udp port is answered
// with one datagram, "WHO port P/udp from SRC:SPORT\n" followed by the
// datagram received (an echo that names who answered).
func ListenPorts(nsPath, who string, tcp, udp []int32) (*Server, error) {
	s := &Server{}
	var lns []net.Listener
	var pcs []net.PacketConn
	err := netns.Do(nsPath, func() error {
		for _, p := range tcp {
			ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		for _, p := range udp {
			pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", p))
			if err != nil {
				return err
			}
			pcs = append(pcs, pc)
		}
		return nil
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		for _, pc := range pcs {
			pc.Close()
		}
		return nil, fmt.Errorf("listen in %s: %w", nsPath, err)
	}
	ports := tcp
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
	for i, pc := range pcs {
		s.udp = append(s.udp, pc)
		go echoUDP(pc, who, udp[i])
	}
	return s, nil
}

// echoUDP answers each datagram until pc is closed.
func echoUDP(pc net.PacketConn, who string, port int32) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		reply := append([]byte(fmt.Sprintf("%s port %d/udp from %s\n", who, port, from)), buf[:n]...)
		_, _ = pc.WriteTo(reply, from)
	}
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
	for _, pc := range s.udp {
		if err := pc.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	s.servers, s.listeners, s.udp = nil, nil, nil
	return errors.Join(errs...)
}

// Dial opens a TCP connection from inside the namespace at nsPath. If
// localIP is set the connection is bound to it (a kubelet probe from the
// node IP).
func Dial(nsPath, localIP, addr string, timeout time.Duration) (net.Conn, error) {
	return DialFrom(nsPath, localIP, 0, addr, timeout)
}

// DialFrom is Dial from a chosen client port as well (0: the kernel's
// choice).
func DialFrom(nsPath, localIP string, localPort int, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(nsPath, func() error {
		d := net.Dialer{Timeout: timeout}
		if localIP != "" || localPort != 0 {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP), Port: localPort}
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
	return get(conn, addr, time.Now().Add(timeout))
}

// GetBy is Get with one deadline for connecting and answering.
func GetBy(nsPath, addr string, deadline time.Time) (string, error) {
	conn, err := Dial(nsPath, "", addr, time.Until(deadline))
	if err != nil {
		return "", err
	}
	return get(conn, addr, deadline)
}

func get(conn net.Conn, addr string, deadline time.Time) (string, error) {
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
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

// Exchange sends one datagram from inside the namespace at nsPath to addr
// (UDP) and returns the first datagram answered, by deadline. The datagram
// is sent again once half-way to the deadline, in case the first was lost.
// A port nobody serves answers with ICMP port unreachable: the error is then
// "connection refused" well before the deadline.
func Exchange(nsPath, addr string, payload []byte, deadline time.Time) (string, error) {
	var conn net.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		conn, err = net.Dial("udp4", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	half := time.Now().Add(time.Until(deadline) / 2)
	for _, until := range []time.Time{half, deadline} {
		if _, err := conn.Write(payload); err != nil {
			return "", err
		}
		_ = conn.SetReadDeadline(until)
		n, err := conn.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
	return "", fmt.Errorf("no answer from %s (udp): %w", addr, os.ErrDeadlineExceeded)
}
