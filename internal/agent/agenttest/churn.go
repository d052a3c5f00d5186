package agenttest

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Sink accepts TCP connections in a namespace and closes them at once.
type Sink struct{ lns []net.Listener }

// ListenSink listens on every addr in ns.
func ListenSink(ns string, addrs ...string) (*Sink, error) {
	s := &Sink{}
	for _, a := range addrs {
		var ln net.Listener
		err := Do(ns, func() error {
			var err error
			ln, err = net.Listen("tcp", a)
			return err
		})
		if err != nil {
			s.Close()
			return nil, err
		}
		s.lns = append(s.lns, ln)
		for i := 0; i < 2; i++ {
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
	}
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// ChurnResult is what a Churn run made.
type ChurnResult struct {
	Made, Failed int64
	Elapsed      time.Duration
}

// Churn opens new TCP connections from ns to the targets (round robin) at
// rate per second for dur, each closed with a RST at once (no TIME_WAIT).
func Churn(ns string, targets []string, rate int, dur time.Duration, workers int) (ChurnResult, error) {
	var res ChurnResult
	tokens := make(chan struct{}, rate)
	stop := make(chan struct{})
	var made, failed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			runtime.LockOSThread() // this thread stays in ns; it exits with the goroutine
			h, err := netns.GetFromName(ns)
			if err != nil {
				errc <- err
				return
			}
			defer h.Close()
			if err := netns.Set(h); err != nil {
				errc <- err
				return
			}
			// Raw blocking syscalls on this locked thread: the generator
			// must cost far less than what it measures.
			sas := make([]unix.Sockaddr, len(targets))
			for i, t := range targets {
				ap, err := netip.ParseAddrPort(t)
				if err != nil {
					errc <- err
					return
				}
				sas[i] = &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
			}
			linger := &unix.Linger{Onoff: 1, Linger: 0}
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				case _, ok := <-tokens:
					if !ok {
						return
					}
				}
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					failed.Add(1)
					continue
				}
				if err := unix.Connect(fd, sas[i%len(sas)]); err != nil {
					failed.Add(1)
				} else {
					made.Add(1)
				}
				_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger)
				unix.Close(fd)
			}
		}(w)
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	sent := 0
	for now := range tick.C {
		el := now.Sub(start)
		if el >= dur {
			break
		}
		due := int(float64(rate) * el.Seconds())
		for ; sent < due; sent++ {
			select {
			case tokens <- struct{}{}:
			default: // workers behind: the token is lost, the rate not reached
			}
		}
	}
	tick.Stop()
	close(tokens)
	wg.Wait()
	close(stop)
	res.Elapsed = time.Since(start)
	res.Made, res.Failed = made.Load(), failed.Load()
	select {
	case err := <-errc:
		return res, err
	default:
	}
	return res, nil
}
