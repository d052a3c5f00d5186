package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/netns"
)

// nfConn is one namespace's netfilter netlink socket (nf_tables and
// ipset both speak NETLINK_NETFILTER), opened once inside the namespace
// and kept: every later request goes through it without entering the
// namespace again, and without starting a process.
type nfConn struct {
	path string
	fd   int
	raw  int // AF_INET raw socket: the ipset name → index lookup (getsockopt)
	mu   sync.Mutex
	seq  uint32
}

// openNF opens the sockets inside the namespace at path ("" = the agent's).
func openNF(path string) (*nfConn, error) {
	c := &nfConn{path: path, fd: -1, raw: -1}
	err := netns.Do(path, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		c.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
		// Acknowledgements without a copy of the request (an add of
		// thousands of set members is a large message).
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
		tv := unix.Timeval{Sec: 10}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		c.raw = raw
		return nil
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("netfilter netlink in %s: %w", path, err)
	}
	return c, nil
}

// Close closes the sockets (nil-safe).
func (c *nfConn) Close() {
	if c == nil {
		return
	}
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	if c.raw >= 0 {
		unix.Close(c.raw)
		c.raw = -1
	}
}

// Netlink message and attribute encoding (nfnetlink: nlmsghdr, nfgenmsg,
// attributes).
const (
	nfnlSubsysIPSet    = 6
	nfnlSubsysNFTables = 10
	nfnlMsgBatchBegin  = 0x10
	nfnlMsgBatchEnd    = 0x11
	nfnlBatchGenID     = 1
	nlaFNested         = 0x8000
	nlaFNetByteorder   = 0x4000
	nlaTypeMask        = 0x3fff
)

type nlmsg struct {
	typ    uint16
	flags  uint16
	family uint8
	resID  uint16
	attrs  []byte
}

func (m nlmsg) encode(seq uint32) []byte {
	n := unix.NLMSG_HDRLEN + 4 + len(m.attrs)
	b := make([]byte, nlAlign(n))
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], m.typ)
	binary.NativeEndian.PutUint16(b[6:], m.flags|unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b[16] = m.family
	b[17] = 0 // NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], m.resID)
	copy(b[20:], m.attrs)
	return b
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

func nla(typ uint16, data []byte) []byte {
	n := 4 + len(data)
	b := make([]byte, nlAlign(n))
	binary.NativeEndian.PutUint16(b[0:], uint16(n))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

func nlaNested(typ uint16, children ...[]byte) []byte {
	return nla(typ|nlaFNested, cat(children...))
}

func nlaStr(typ uint16, s string) []byte { return nla(typ, append([]byte(s), 0)) }
func nlaU8(typ uint16, v uint8) []byte   { return nla(typ, []byte{v}) }

func nlaU32(typ uint16, v uint32) []byte { return nla(typ, be32(v)) }

func be32(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

func nlaU64(typ uint16, v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return nla(typ, b)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// attr is one parsed attribute; raw is its whole encoding (header and
// padding included), for copying it unchanged.
type attr struct {
	typ  uint16
	data []byte
	raw  []byte
}

func parseAttrs(b []byte) []attr {
	var out []attr
	for len(b) >= 4 {
		n := int(binary.NativeEndian.Uint16(b[0:]))
		if n < 4 || n > len(b) {
			break
		}
		end := nlAlign(n)
		if end > len(b) {
			end = len(b)
		}
		out = append(out, attr{typ: binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask, data: b[4:n], raw: b[:end]})
		b = b[end:]
	}
	return out
}

func getAttr(as []attr, typ uint16) []byte {
	for _, a := range as {
		if a.typ == typ {
			return a.data
		}
	}
	return nil
}

func attrStr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

func attrU32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// nlError is an error the kernel returned for one message.
type nlError struct {
	errno unix.Errno
	msg   string
}

func (e *nlError) Error() string {
	if e.msg != "" {
		return fmt.Sprintf("%v (%s)", e.errno, e.msg)
	}
	return e.errno.Error()
}
func (e *nlError) Unwrap() error { return e.errno }

var recvBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// exchange sends msgs (in one nf_tables transaction when batch is set,
// checked against generation genid when it is not 0) and waits for every
// message's acknowledgement. It returns the first error the kernel
// reported, and the data messages it sent back (payloads after nfgenmsg).
func (c *nfConn) exchange(msgs []nlmsg, batch bool, genid uint32) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errors.New("netlink socket closed")
	}
	want := map[uint32]int{}
	var buf []byte
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := unix.Sendto(c.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		buf = buf[:0]
		return err
	}
	if batch {
		c.seq++
		var a []byte
		if genid != 0 {
			a = nlaU32(nfnlBatchGenID, genid)
		}
		buf = append(buf, nlmsg{typ: nfnlMsgBatchBegin, resID: nfnlSubsysNFTables, attrs: a}.encode(c.seq)...)
	}
	for i, m := range msgs {
		c.seq++
		m.flags |= unix.NLM_F_ACK
		want[c.seq] = i
		buf = append(buf, m.encode(c.seq)...)
		// Plain (non-batch) messages may go in several datagrams; a
		// batch must be one.
		if !batch && len(buf) > 512<<10 {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if batch {
		c.seq++
		buf = append(buf, nlmsg{typ: nfnlMsgBatchEnd, resID: nfnlSubsysNFTables}.encode(c.seq)...)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	var firstErr error
	var data [][]byte
	err := c.receive(func(typ uint16, seq uint32, payload []byte) bool {
		if _, ok := want[seq]; !ok {
			return false // a stale reply of an earlier, failed exchange
		}
		if typ == unix.NLMSG_ERROR {
			if en := int32(binary.NativeEndian.Uint32(payload)); en != 0 && firstErr == nil {
				firstErr = &nlError{errno: unix.Errno(-en), msg: extAckMsg(payload)}
			}
			delete(want, seq)
			return len(want) == 0
		}
		if len(payload) >= 4 {
			data = append(data, append([]byte(nil), payload[4:]...))
		}
		return false
	})
	if err != nil {
		return data, err
	}
	return data, firstErr
}

// dump sends one dump request and returns the payloads (after nfgenmsg)
// of its answer.
func (c *nfConn) dump(m nlmsg) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errors.New("netlink socket closed")
	}
	c.seq++
	seq := c.seq
	m.flags |= unix.NLM_F_DUMP
	if err := unix.Sendto(c.fd, m.encode(seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out [][]byte
	var derr error
	err := c.receive(func(typ uint16, s uint32, payload []byte) bool {
		if s != seq {
			return false
		}
		switch typ {
		case unix.NLMSG_DONE:
			return true
		case unix.NLMSG_ERROR:
			if en := int32(binary.NativeEndian.Uint32(payload)); en != 0 {
				derr = &nlError{errno: unix.Errno(-en), msg: extAckMsg(payload)}
			}
			return true
		}
		if len(payload) >= 4 {
			out = append(out, append([]byte(nil), payload[4:]...))
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	return out, derr
}

// receive reads messages and hands each to fn until fn returns true.
func (c *nfConn) receive(fn func(typ uint16, seq uint32, payload []byte) bool) error {
	bp := recvBufs.Get().(*[]byte)
	defer recvBufs.Put(bp)
	buf := *bp
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		b := buf[:n]
		for len(b) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			if l < unix.NLMSG_HDRLEN {
				break
			}
			if l > len(b) {
				// Truncated (larger than the buffer): only an error's
				// code, at its start, is of use.
				if binary.NativeEndian.Uint16(b[4:]) != unix.NLMSG_ERROR || len(b) < unix.NLMSG_HDRLEN+4 {
					break
				}
				l = len(b)
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if fn(typ, seq, b[unix.NLMSG_HDRLEN:l]) {
				return nil
			}
			b = b[min(nlAlign(l), len(b)):]
		}
	}
}

// extAckMsg extracts the kernel's extended-ack message from an
// NLMSG_ERROR payload, if any.
func extAckMsg(p []byte) string {
	if len(p) < 4+unix.NLMSG_HDRLEN {
		return ""
	}
	ol := int(binary.NativeEndian.Uint32(p[4:]))
	off := 4 + unix.NLMSG_HDRLEN
	// With NLM_F_CAPPED (not requested) only the header is echoed; the
	// kernel echoes the whole request otherwise.
	if off-unix.NLMSG_HDRLEN+ol <= len(p) && ol >= unix.NLMSG_HDRLEN {
		off = 4 + nlAlign(ol)
	}
	if off > len(p) {
		return ""
	}
	const nlmsgerrAttrMsg = 1
	m := attrStr(getAttr(parseAttrs(p[off:]), nlmsgerrAttrMsg))
	for _, r := range m {
		if r < 0x20 || r > 0x7e {
			return ""
		}
	}
	return m
}

// setIndex is the kernel's index of the ipset called name in the
// namespace (the xt_set match refers to sets by index), via the same
// getsockopt the iptables set match uses.
func (c *nfConn) setIndex(name string) (uint16, error) {
	const (
		soIPSet          = 83
		ipSetOpGetByName = 0x6
		ipsetProtocol    = 6
	)
	var req struct {
		op      uint32
		version uint32
		name    [32]byte
	}
	req.op, req.version = ipSetOpGetByName, ipsetProtocol
	copy(req.name[:31], name)
	l := uint32(unsafe.Sizeof(req))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(c.raw), unix.SOL_IP, soIPSet,
		uintptr(unsafe.Pointer(&req)), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return 0, fmt.Errorf("ipset %s: index: %w", name, errno)
	}
	idx := binary.NativeEndian.Uint16(req.name[:2])
	if idx == 0xffff {
		return 0, fmt.Errorf("ipset %s: no such set", name)
	}
	return idx, nil
}
