package agenttest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Server is a TCP server in a namespace: per connection it reads until the
// client half-closes, then writes Reply bytes and closes.
type Server struct {
	ln    net.Listener
	Reply int
	wg    sync.WaitGroup
	mu    sync.Mutex
	got   map[string]int // client addr -> bytes read
}

// ListenTCP starts a Server in ns on addr ("ip:port").
func ListenTCP(ns, addr string, reply int) (*Server, error) {
	s := &Server{Reply: reply, got: map[string]int{}}
	err := Do(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s in %s: %w", addr, ns, err)
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *Server) serve() {
	defer s.wg.Done()
	buf := make([]byte, s.Reply)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			n, _ := io.Copy(io.Discard, c)
			s.mu.Lock()
			s.got[c.RemoteAddr().String()] = int(n)
			s.mu.Unlock()
			_, _ = c.Write(buf)
		}()
	}
}

// Close stops accepting.
func (s *Server) Close() { s.ln.Close(); s.wg.Wait() }

// Conn is the client's view of one finished exchange.
type Conn struct {
	Local, Remote netip.AddrPort
	// SegsOut/SegsIn are the kernel's TCP segment counters (TCP_INFO) after
	// the exchange: the exact packets the client sent and received.
	SegsOut, SegsIn uint32
	BytesSent       uint64 // payload bytes sent (tcpi_bytes_sent)
	BytesReceived   uint64
}

// Exchange dials dst from ns, sends `send` bytes, half-closes, reads the
// reply to EOF (the server's FIN) and returns the kernel's counters.
func Exchange(ns, dst string, send int) (Conn, error) {
	tc, err := DialTCP(ns, dst)
	if err != nil {
		return Conn{}, err
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write(make([]byte, send)); err != nil {
		return Conn{}, err
	}
	if err := tc.CloseWrite(); err != nil {
		return Conn{}, err
	}
	if _, err := io.Copy(io.Discard, tc); err != nil {
		return Conn{}, err
	}
	// The ACK of the server's FIN went out when the FIN arrived, before
	// the read saw EOF; let it cross the veth.
	time.Sleep(20 * time.Millisecond)
	out := Conn{
		Local:  tc.LocalAddr().(*net.TCPAddr).AddrPort(),
		Remote: tc.RemoteAddr().(*net.TCPAddr).AddrPort(),
	}
	out.Local = netip.AddrPortFrom(out.Local.Addr().Unmap(), out.Local.Port())
	out.Remote = netip.AddrPortFrom(out.Remote.Addr().Unmap(), out.Remote.Port())
	info, err := tcpInfo(tc)
	if err != nil {
		return Conn{}, err
	}
	out.SegsOut, out.SegsIn = info.Segs_out, info.Segs_in
	out.BytesSent, out.BytesReceived = info.Bytes_sent, info.Bytes_received
	return out, nil
}

// DialTCP dials dst from inside namespace ns.
func DialTCP(ns, dst string) (*net.TCPConn, error) {
	var c net.Conn
	err := Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", dst, 5*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", dst, ns, err)
	}
	return c.(*net.TCPConn), nil
}

func tcpInfo(c syscall.Conn) (*unix.TCPInfo, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var info *unix.TCPInfo
	var ierr error
	err = rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	return info, errors.Join(err, ierr)
}

// Reset dials dst from ns, sends `send` bytes and aborts with a RST.
func Reset(ns, dst string, send int) (netip.AddrPort, error) {
	tc, err := DialTCP(ns, dst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	local := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := tc.Write(make([]byte, send)); err != nil {
		return local, err
	}
	time.Sleep(20 * time.Millisecond)
	_ = tc.SetLinger(0)
	return netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), tc.Close()
}

// SendUDP sends n datagrams of size bytes from ns to dst and returns the
// source address used.
func SendUDP(ns, dst string, n, size int) (netip.AddrPort, error) {
	var c net.Conn
	err := Do(ns, func() error {
		var err error
		c, err = net.Dial("udp", dst)
		return err
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		if _, err := c.Write(buf); err != nil {
			return netip.AddrPort{}, err
		}
	}
	l := c.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(l.Addr().Unmap(), l.Port()), nil
}

// ListenUDP opens a UDP socket in ns that echoes nothing; it just receives.
func ListenUDP(ns, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc, nil
}
