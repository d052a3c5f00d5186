// Package netns creates, enters and removes network namespaces; the lab, the
// agent and their tests share it. A named namespace is a bind mount under
// /run/netns, the same place `ip netns` uses, so `ip netns exec NAME ...` works
// on every lab namespace and a crashed lab can be found and removed by name.
//
// Nothing here ever changes the namespace of a thread other than one locked
// for the duration of a call: callers stay in the namespace they started in.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	vns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Dir is where named namespaces are bind-mounted (shared with iproute2).
const Dir = "/run/netns"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Create makes a new named network namespace and returns its path. The
// calling thread's namespace is untouched. The new namespace's loopback is up.
func Create(name string) (string, error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", Dir, err)
	}
	path := Path(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread unshares into the new namespace and then returns to
		// its original one. Threads are never left to die: a child process
		// started elsewhere with Pdeathsig would be killed with its
		// forking thread (golang/go#27505).
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare netns %s: %w", name, err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		err = unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind-mount netns %s: %w", name, err)
		} else if lo, lerr := netlink.LinkByName("lo"); lerr != nil {
			err = lerr
		} else {
			err = netlink.LinkSetUp(lo)
		}
		if serr := vns.Set(orig); serr != nil {
			errc <- errors.Join(err, serr) // the thread stays locked and is discarded
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		_ = Delete(name)
		return "", err
	}
	return path, nil
}

// Delete unmounts and removes a named namespace. The kernel frees the
// namespace, and every interface in it, once no process or socket holds it.
// A namespace that does not exist is not an error.
func Delete(name string) error {
	path := Path(name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// List returns the names of the named namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Open returns a handle on the namespace at path; close it when done.
func Open(path string) (vns.NsHandle, error) {
	h, err := vns.GetFromPath(path)
	if err != nil {
		return h, fmt.Errorf("open netns %s: %w", path, err)
	}
	return h, nil
}

// Do runs fn on a thread that has entered the namespace at path ("" = the
// caller's own namespace: fn runs directly). Sockets fn creates stay in that
// namespace after Do returns; processes fn starts are born in it. If the
// thread cannot be brought back to its original namespace it is discarded
// rather than reused.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := Open(path)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vns.Get()
		if err != nil {
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := vns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := vns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave netns %s: %w", path, err))
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Run runs cmd inside the namespace at path and waits for it; the child is
// born in that namespace.
func Run(path string, cmd *exec.Cmd) error {
	return Do(path, cmd.Run)
}

// Start starts cmd inside the namespace at path without waiting for it.
func Start(path string, cmd *exec.Cmd) error {
	return Do(path, cmd.Start)
}

// Output runs argv inside the namespace at path and returns its combined
// output; a failure carries that output.
func Output(path string, stdin string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := Run(path, cmd); err != nil {
		return out.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(argv, " "), filepath.Base(path), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Sysctl writes a /proc/sys value (e.g. "net/ipv4/ip_forward") inside the
// namespace at path. Network sysctls are per namespace.
func Sysctl(path, key, value string) error {
	return Do(path, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
	})
}
