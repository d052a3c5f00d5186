package enforce

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/netns"
)

// nfnlgrpNFTables is the netlink multicast group nf_tables announces every
// ruleset change on (NFNLGRP_NFTABLES). iptables 1.8 (nf_tables backend),
// nft and iptables-restore all change rules through nf_tables, so any
// edit of a namespace's rules wakes its watcher.
const nfnlgrpNFTables = 7

// nftWatch is a netlink socket in one namespace subscribed to nf_tables
// change notifications, read through the runtime's poller: an idle
// watcher holds no thread and costs nothing.
type nftWatch struct {
	f *os.File
}

// watchNFT subscribes in the namespace at path and calls fn (from its own
// goroutine) after every batch of notifications, until Close.
func watchNFT(path string, fn func()) (*nftWatch, error) {
	fd := -1
	err := netns.Do(path, func() error {
		s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		if err := unix.Bind(s, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(s)
			return err
		}
		if err := unix.SetsockoptInt(s, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, nfnlgrpNFTables); err != nil {
			unix.Close(s)
			return err
		}
		// A flood of changes may overrun the buffer; any message, or an
		// ENOBUFS, only means "look again".
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		fd = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nf_tables notifications in %s: %w", path, err)
	}
	w := &nftWatch{f: os.NewFile(uintptr(fd), "nf_tables-notifications")}
	rc, err := w.f.SyscallConn()
	if err != nil {
		w.f.Close()
		return nil, fmt.Errorf("nf_tables notifications in %s: %w", path, err)
	}
	go func() {
		buf := make([]byte, 1<<16)
		for {
			var rerr error
			err := rc.Read(func(fd uintptr) bool {
				_, _, rerr = unix.Recvfrom(int(fd), buf, 0)
				return rerr != unix.EAGAIN && rerr != unix.EINTR
			})
			switch {
			case err != nil: // closed
				return
			case rerr == nil || rerr == unix.ENOBUFS:
				fn()
			default:
				return
			}
		}
	}()
	return w, nil
}

// Close stops the watcher (nil-safe).
func (w *nftWatch) Close() {
	if w != nil {
		w.f.Close()
	}
}
