package enforce

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

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

// ours extracts Palisade's lines from a normalized filter save: its chain
// declarations, its chains' rules and the jumps to them. It also reports
// which base chains have a jump and whether one carries the new-table mark.
func ours(save string) (lines []string, jumps map[string]bool, newTable bool, jumpLines []string) {
	jumps = map[string]bool{}
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, ":PALISADE-IN ") || strings.HasPrefix(l, ":PALISADE-OUT ") || strings.HasPrefix(l, ":PALISADE-FWD "):
			lines = append(lines, l)
		case strings.HasPrefix(l, "-A PALISADE-IN ") || strings.HasPrefix(l, "-A PALISADE-OUT ") || strings.HasPrefix(l, "-A PALISADE-FWD "):
			lines = append(lines, l)
		case strings.HasPrefix(l, "-A "):
			for c, base := range baseChain {
				if strings.HasPrefix(l, "-A "+base+" ") && strings.HasSuffix(l, " -j "+c) {
					lines = append(lines, l)
					jumpLines = append(jumpLines, l)
					jumps[c] = true
					if strings.Contains(l, `"`+jumpCommentNewTable+`"`) {
						newTable = true
					}
				}
			}
		}
	}
	return lines, jumps, newTable, jumpLines
}

// ipsetState is Palisade's sets in a namespace: name → type and members.
type ipsetState map[string]*ruleset.IPSet

func readSets(path string) (ipsetState, error) {
	out, err := run(path, "", "ipset", "save")
	if err != nil {
		return nil, err
	}
	st := ipsetState{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || !strings.HasPrefix(f[1], SetPrefix) {
			continue
		}
		switch f[0] {
		case "create":
			st[f[1]] = &ruleset.IPSet{Name: f[1], Type: ruleset.SetType(f[2])}
		case "add":
			if s := st[f[1]]; s != nil {
				s.Members = append(s.Members, canonicalMember(s.Type, f[2]))
			}
		}
	}
	for _, s := range st {
		sort.Strings(s.Members)
	}
	return st, nil
}

// canonicalMember writes a member the way ipset save prints it (a /32 in
// a hash:net set is a bare address).
func canonicalMember(t ruleset.SetType, m string) string {
	if t == ruleset.HashNet {
		return strings.TrimSuffix(m, "/32")
	}
	return m
}

// setsScript returns the ipset restore input turning have into want
// (adds and deletes member by member, so a changed membership never
// reloads a rule), and the sets of have that want no longer has.
func setsScript(have ipsetState, want []ruleset.IPSet) (script string, stale []string, changes int) {
	var b strings.Builder
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.Name] = true
		cur := have[s.Name]
		if cur != nil && cur.Type != s.Type {
			// Names are derived from type and meaning; a clash is a bug
			// or someone else's set: recreate it.
			fmt.Fprintf(&b, "flush %s\n", s.Name)
			cur = &ruleset.IPSet{Name: s.Name, Type: s.Type}
			changes++
		}
		if cur == nil {
			fmt.Fprintf(&b, "create %s %s family inet maxelem 1048576\n", s.Name, s.Type)
			cur = &ruleset.IPSet{}
			changes++
		}
		haveM := map[string]bool{}
		for _, m := range cur.Members {
			haveM[m] = true
		}
		wantM := map[string]bool{}
		for _, m := range s.Members {
			m = canonicalMember(s.Type, m)
			wantM[m] = true
			if !haveM[m] {
				fmt.Fprintf(&b, "add %s %s\n", s.Name, m)
				changes++
			}
		}
		for _, m := range cur.Members {
			if !wantM[m] {
				fmt.Fprintf(&b, "del %s %s\n", s.Name, m)
				changes++
			}
		}
	}
	for name := range have {
		if !wanted[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	return b.String(), stale, changes
}

// program makes the namespace at path hold exactly spec's chains and sets.
// It returns a description of what it had to change ("" when the kernel
// already held it all), which is the drift report when called to repair.
func program(path string, s *spec, force bool, want *snapshot) (changed string, snap *snapshot, err error) {
	var what []string
	have, err := readSets(path)
	if err != nil {
		return "", nil, err
	}
	sets := s.sets()
	script, stale, n := setsScript(have, sets)
	if script != "" {
		if out, err := run(path, script, "ipset", "restore", "-exist"); err != nil {
			return "", nil, fmt.Errorf("ipset restore: %w: %s", err, out)
		}
		what = append(what, fmt.Sprintf("%d set changes", n))
	}
	save, err := SaveFilter(path)
	if err != nil {
		return "", nil, err
	}
	lines, jumps, newTable, _ := ours(save)
	if want == nil || force || strings.Join(lines, "\n") != strings.Join(want.lines, "\n") {
		if len(lines) == 0 && !strings.Contains(save, "*filter") {
			newTable = true
		}
		in := render(s, jumps, newTable)
		if out, err := run(path, in, "iptables-restore", "--noflush", "-w", "5"); err != nil {
			return "", nil, fmt.Errorf("iptables-restore: %w: %s", err, out)
		}
		if want != nil {
			what = append(what, "chains "+diffSummary(want.lines, lines))
		} else {
			what = append(what, "chains")
		}
		if save, err = SaveFilter(path); err != nil {
			return "", nil, err
		}
		lines, _, _, _ = ours(save)
	}
	if len(stale) > 0 {
		var b strings.Builder
		for _, name := range stale {
			fmt.Fprintf(&b, "destroy %s\n", name)
		}
		if out, err := run(path, b.String(), "ipset", "restore"); err != nil {
			return "", nil, fmt.Errorf("ipset destroy: %w: %s", err, out)
		}
	}
	members := 0
	for _, st := range sets {
		members += len(st.Members)
	}
	return strings.Join(what, ", "), &snapshot{lines: lines, sets: len(sets), members: members}, nil
}

// checkChains is the cheap check after an nf_tables notification (which
// set edits never cause): one iptables-save; only if Palisade's lines
// differ from the snapshot is the namespace repaired with program.
func checkChains(path string, s *spec, _ bool, want *snapshot) (string, *snapshot, error) {
	save, err := SaveFilter(path)
	if err != nil {
		return "", nil, err
	}
	if lines, _, _, _ := ours(save); strings.Join(lines, "\n") == strings.Join(want.lines, "\n") {
		return "", want, nil
	}
	return program(path, s, false, want)
}

// snapshot is what iptables-save shows of Palisade's chains right after
// programming: the drift check compares against it.
type snapshot struct {
	lines   []string
	sets    int
	members int
}

func (s *snapshot) rules() int {
	n := 0
	for _, l := range s.lines {
		if strings.HasPrefix(l, "-A PALISADE-") {
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
func remove(path string) error {
	save, err := SaveFilter(path)
	if err != nil {
		return err
	}
	lines, _, newTable, jumpLines := ours(save)
	if len(lines) > 0 {
		var b strings.Builder
		b.WriteString("*filter\n")
		for _, j := range jumpLines {
			b.WriteString("-D" + strings.TrimPrefix(j, "-A") + "\n")
		}
		present := map[string]bool{}
		for _, l := range lines {
			for c := range baseChain {
				if strings.HasPrefix(l, ":"+c+" ") {
					present[c] = true
				}
			}
		}
		for _, c := range []string{ChainIn, ChainOut, ChainFwd} {
			if present[c] {
				fmt.Fprintf(&b, "-F %s\n-X %s\n", c, c)
			}
		}
		b.WriteString("COMMIT\n")
		if out, err := run(path, b.String(), "iptables-restore", "--noflush", "-w", "5"); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, out)
		}
	}
	have, err := readSets(path)
	if err != nil {
		return err
	}
	if len(have) > 0 {
		var b strings.Builder
		names := make([]string, 0, len(have))
		for n := range have {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(&b, "destroy %s\n", n)
		}
		if out, err := run(path, b.String(), "ipset", "restore"); err != nil {
			return fmt.Errorf("ipset destroy: %w: %s", err, out)
		}
	}
	if newTable {
		after, err := SaveFilter(path)
		if err != nil {
			return err
		}
		if emptyFilter(after) {
			if out, err := run(path, "", "nft", "delete", "table", "ip", "filter"); err != nil {
				return fmt.Errorf("remove the filter table Palisade created: %w: %s", err, out)
			}
		}
	}
	return nil
}

// emptyFilter reports a filter table with only its base chains, accepting,
// and no rule.
func emptyFilter(save string) bool {
	for _, l := range strings.Split(save, "\n") {
		switch {
		case l == "", l == "*filter", l == "COMMIT":
		case l == ":INPUT ACCEPT [0:0]", l == ":FORWARD ACCEPT [0:0]", l == ":OUTPUT ACCEPT [0:0]":
		default:
			return false
		}
	}
	return true
}

// errNoNamespace is returned for a pod whose namespace is not found (yet).
var errNoNamespace = errors.New("network namespace not found")
