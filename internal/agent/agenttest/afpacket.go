package agenttest

import (
	"encoding/binary"
	"runtime"
	"sync"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// PacketCounter is the AF_PACKET alternative to the eBPF classifier, for
// comparison in benchmarks: one thread per interface reads every packet
// (recvfrom on an ETH_P_ALL socket) and counts it per 5-tuple in a map, the
// same work the classifier does in the kernel.
type PacketCounter struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	Packets uint64
	Drops   uint64        // the sockets' own drop counters (PACKET_STATISTICS)
	CPU     time.Duration // reader threads' user+system time
	Flows   int
}

type fiveTuple struct {
	src, dst     [4]byte
	sport, dport uint16
	proto        uint8
}

// CountAFPacket starts reading ifaces in namespace ns.
func CountAFPacket(ns string, ifaces []string) (*PacketCounter, error) {
	pc := &PacketCounter{stop: make(chan struct{})}
	errc := make(chan error, len(ifaces))
	for _, ifname := range ifaces {
		pc.wg.Add(1)
		go pc.read(ns, ifname, errc)
	}
	for range ifaces {
		if err := <-errc; err != nil {
			pc.Stop()
			return nil, err
		}
	}
	return pc, nil
}

func (pc *PacketCounter) read(ns, ifname string, ready chan<- error) {
	defer pc.wg.Done()
	runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
	h, err := netns.GetFromName(ns)
	if err != nil {
		ready <- err
		return
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		ready <- err
		return
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
	if err != nil {
		ready <- err
		return
	}
	defer unix.Close(fd)
	idx, err := ifIndex(fd, ifname)
	if err != nil {
		ready <- err
		return
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: idx}); err != nil {
		ready <- err
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	var ru0 unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
	ready <- nil
	flows := map[fiveTuple][2]uint64{}
	buf := make([]byte, 256) // headers are enough; MSG_TRUNC reports the length
	var pkts uint64
	for {
		select {
		case <-pc.stop:
			var ru1 unix.Rusage
			_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
			st, _ := unix.GetsockoptTpacketStats(fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
			pc.mu.Lock()
			pc.Packets += pkts
			if st != nil {
				pc.Drops += uint64(st.Drops)
			}
			pc.CPU += time.Duration(unix.TimevalToNsec(ru1.Utime) - unix.TimevalToNsec(ru0.Utime) + unix.TimevalToNsec(ru1.Stime) - unix.TimevalToNsec(ru0.Stime))
			pc.Flows += len(flows)
			pc.mu.Unlock()
			return
		default:
		}
		n, _, err := unix.Recvfrom(fd, buf, unix.MSG_TRUNC)
		if err != nil {
			continue
		}
		pkts++
		if n < 14+20 || binary.BigEndian.Uint16(buf[12:]) != unix.ETH_P_IP {
			continue
		}
		ip := buf[14:]
		ihl := int(ip[0]&0x0f) * 4
		var k fiveTuple
		copy(k.src[:], ip[12:16])
		copy(k.dst[:], ip[16:20])
		k.proto = ip[9]
		if len(ip) >= ihl+4 {
			k.sport, k.dport = binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
		}
		v := flows[k]
		v[0]++
		v[1] += uint64(n)
		flows[k] = v
	}
}

// Stop ends reading and fills in the counters.
func (pc *PacketCounter) Stop() {
	close(pc.stop)
	pc.wg.Wait()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ifIndex(fd int, name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, err
	}
	return int(ifr.Uint32()), nil
}
