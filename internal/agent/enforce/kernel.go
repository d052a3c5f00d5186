package enforce

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/palisade-dev/palisade/internal/netns"
	"github.com/palisade-dev/palisade/internal/ruleset"
)

// run runs argv in the namespace at path ("" = the agent's own) with stdin.
func run(path, stdin string, argv ...string) (string, error) {
	return netns.Output(path, stdin, argv...)
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// SaveFilter returns iptables-save's filter table of the namespace without
// counters and comment lines ("" when there is no filter table). It reads
// every table: `iptables-save -t filter` would create a missing filter
// table (nf_tables backend) and so change what it reports.
func SaveFilter(path string) (string, error) {
	all, err := SaveAll(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	in := false
	for _, l := range strings.SplitAfter(all, "\n") {
		if strings.HasPrefix(l, "*") {
			in = l == "*filter\n"
		}
		if in {
			b.WriteString(l)
		}
		if l == "COMMIT\n" {
			in = false
		}
	}
	return b.String(), nil
}

// SaveAll is iptables-save of every table, normalized like SaveFilter.
func SaveAll(path string) (string, error) {
	out, err := run(path, "", "iptables-save")
	if err != nil {
		return "", err
	}
	return normalizeSave(out), nil
}

func normalizeSave(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(counters.ReplaceAllString(l, "[0:0]"))
		b.WriteString("\n")
	}
	return b.String()
}

// canonicalMember writes a member the way ipset save prints it (a /32 in
// a hash:net set is a bare address).
func canonicalMember(t ruleset.SetType, m string) string {
	if t == ruleset.HashNet {
		return strings.TrimSuffix(m, "/32")
	}
	return m
}

// program makes the namespace hold exactly spec's chains and sets. It
// returns a description of what it had to change ("" when the kernel
// already held it all), which is the drift report when called to repair.
// Everything goes over the namespace's netlink socket; iptables-restore
// runs only for chains no namespace of this agent was given before (see
// nft.go).
func program(c *nfConn, s *spec, force bool, want *snapshot) (changed string, snap *snapshot, err error) {
	var what []string
	have, err := c.listSets(SetPrefix, true)
	if err != nil {
		return "", nil, err
	}
	sets := s.sets()
	n, stale, err := c.syncSets(have, sets)
	if err != nil {
		return "", nil, err
	}
	if n > 0 {
		what = append(what, fmt.Sprintf("%d set changes", n))
	}
	f, err := c.readFilter()
	if err != nil {
		return "", nil, err
	}
	lines, jumps, newTable, _ := f.ours()
	if want == nil || force || strings.Join(lines, "\n") != strings.Join(want.lines, "\n") {
		if len(lines) == 0 && !f.table {
			newTable = true
		}
		if err := writeChains(c, s, f, jumps, newTable); err != nil {
			return "", nil, err
		}
		if want != nil {
			what = append(what, "chains "+diffSummary(want.lines, lines))
		} else {
			what = append(what, "chains")
		}
		if f, err = c.readFilter(); err != nil {
			return "", nil, err
		}
		lines, _, _, _ = f.ours()
	}
	if err := c.destroySets(stale); err != nil {
		return "", nil, err
	}
	members := 0
	counts := map[string]int{}
	for _, st := range sets {
		members += len(st.Members)
		e, err := encodedMembers(st)
		if err != nil {
			return "", nil, err
		}
		counts[st.Name] = e.n
	}
	return strings.Join(what, ", "), &snapshot{lines: lines, sets: len(sets), members: members, counts: counts}, nil
}

// Programming counters (for benchmarks and tests): chains written from a
// template over netlink, and with iptables-restore.
var replicated, restored atomic.Int64

// writeChains replaces Palisade's chains (adding missing jumps) in one
// transaction: from a template when there is one, else with
// iptables-restore --noflush, whose result then becomes the template.
func writeChains(c *nfConn, s *spec, f *nftFilter, jumps map[string]bool, newTable bool) error {
	text := chainText(s)
	err := c.replicate(text, s, f, newTable)
	if errors.Is(err, errNoTemplate) && waitLearning(text) {
		// Another namespace was being programmed with these chains: its
		// template is there now (unless that failed).
		err = c.replicate(text, s, f, newTable)
	}
	if err == nil {
		replicated.Add(1)
		return nil
	}
	done := startLearning(text)
	defer done()
	if !errors.Is(err, errNoTemplate) {
		// The transaction was refused as a whole (e.g. the table changed
		// under it): nothing was written; iptables-restore does it.
		slog.Debug("enforce: netlink programming refused, using iptables-restore", "netns", c.path, "err", err)
		if f2, rerr := c.readFilter(); rerr == nil {
			_, jumps, _, _ = f2.ours()
		}
	}
	in := render(s, jumps, newTable)
	if out, err := run(c.path, in, "iptables-restore", "--noflush", "-w", "5"); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, out)
	}
	restored.Add(1)
	if f2, err := c.readFilter(); err == nil {
		learn(text, s, f2)
	}
	return nil
}

// learning holds, per chain text, the namespace being programmed with
// iptables-restore to learn its template: the others with the same chains
// (all of a workload's pods, programmed side by side) wait for it instead
// of each starting a process.
var learning = struct {
	sync.Mutex
	m map[string]chan struct{}
}{m: map[string]chan struct{}{}}

// waitLearning waits for the learning of text in progress, if any, and
// reports whether there was one.
func waitLearning(text string) bool {
	learning.Lock()
	ch, ok := learning.m[text]
	learning.Unlock()
	if ok {
		<-ch
	}
	return ok
}

// startLearning marks text as being learned; call the result when done.
func startLearning(text string) (done func()) {
	learning.Lock()
	defer learning.Unlock()
	if _, ok := learning.m[text]; ok {
		return func() {} // another one too: both restore, harmlessly
	}
	ch := make(chan struct{})
	learning.m[text] = ch
	return func() {
		learning.Lock()
		delete(learning.m, text)
		learning.Unlock()
		close(ch)
	}
}

// checkChains is the cheap check after an nf_tables notification (which
// set edits never cause): one read of the table; only if Palisade's part
// differs from the snapshot is the namespace repaired with program.
func checkChains(c *nfConn, s *spec, _ bool, want *snapshot) (string, *snapshot, error) {
	f, err := c.readFilter()
	if err != nil {
		return "", nil, err
	}
	if lines, _, _, _ := f.ours(); strings.Join(lines, "\n") == strings.Join(want.lines, "\n") {
		return "", want, nil
	}
	return program(c, s, false, want)
}

// checkSets is the cheap check of the sets (ipset sends no notification):
// one header listing; only if a set is missing or holds another number of
// members is the namespace repaired with program.
func checkSets(c *nfConn, s *spec, _ bool, want *snapshot) (string, *snapshot, error) {
	have, err := c.listSets(SetPrefix, false)
	if err != nil {
		return "", nil, err
	}
	same := len(have) == len(want.counts)
	for name, n := range want.counts {
		if h := have[name]; h == nil || h.elements != n {
			same = false
		}
	}
	if same {
		return "", want, nil
	}
	return program(c, s, false, want)
}

// snapshot is what iptables-save shows of Palisade's chains right after
// programming: the drift check compares against it.
type snapshot struct {
	lines   []string
	sets    int
	members int
	counts  map[string]int // set → members, for checkSets
}

func (s *snapshot) rules() int {
	n := 0
	for _, l := range s.lines {
		if c, _, ok := strings.Cut(l, " "); ok && baseChain[c] != "" {
			n++
		}
	}
	return n
}

func diffSummary(want, have []string) string {
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	h := map[string]bool{}
	for _, l := range have {
		h[l] = true
	}
	var missing, extra int
	for l := range w {
		if !h[l] {
			missing++
		}
	}
	for l := range h {
		if !w[l] {
			extra++
		}
	}
	return fmt.Sprintf("(%d lines missing, %d unexpected)", missing, extra)
}

// remove deletes Palisade's jumps, chains and sets from the namespace,
// and the filter table itself if Palisade created it and nothing else is
// in it: the namespace's iptables-save and ipset list are then what they
// were before enforcement.
func remove(c *nfConn) error {
	if err := c.removeOurs(); err != nil {
		return fmt.Errorf("remove Palisade's chains: %w", err)
	}
	have, err := c.listSets(SetPrefix, false)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(have))
	for n := range have {
		names = append(names, n)
	}
	sort.Strings(names)
	return c.destroySets(names)
}

// errNoNamespace is returned for a pod whose namespace is not found (yet).
var errNoNamespace = errors.New("network namespace not found")
