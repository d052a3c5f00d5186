package enforce

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/netns"
)

// nfnlgrpNFTables is the netlink multicast group nf_tables announces every
// ruleset change on (NFNLGRP_NFTABLES). iptables 1.8 (nf_tables backend),
// nft and iptables-restore all change rules through nf_tables, so any
// edit of a namespace's rules wakes its watcher.
const nfnlgrpNFTables = 7

// nftWatch is a netlink socket in one namespace subscribed to nf_tables
// change notifications.
type nftWatch struct {
	fd     int
	mu     sync.Mutex
	closed bool
}

// watchNFT subscribes in the namespace at path and calls fn (from its own
// goroutine) after every batch of notifications, until Close.
func watchNFT(path string, fn func()) (*nftWatch, error) {
	w := &nftWatch{fd: -1}
	err := netns.Do(path, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, nfnlgrpNFTables); err != nil {
			unix.Close(fd)
			return err
		}
		// A flood of changes may overrun the buffer; any message, or an
		// ENOBUFS, only means "look again".
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
		// Close cannot wake a blocked recvfrom; a timeout lets the reader
		// see it (rarely: an idle agent wakes each watcher every 5 s).
		tv := unix.Timeval{Sec: 5}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		w.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nf_tables notifications in %s: %w", path, err)
	}
	go func() {
		buf := make([]byte, 1<<16)
		defer unix.Close(w.fd)
		for {
			_, _, err := unix.Recvfrom(w.fd, buf, 0)
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			switch {
			case closed:
				return
			case err == unix.EAGAIN || err == unix.EINTR:
			case err == nil || err == unix.ENOBUFS:
				fn()
			default:
				return
			}
		}
	}()
	return w, nil
}

// Close stops the watcher.
func (w *nftWatch) Close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}
