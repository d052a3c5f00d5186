package enforce

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Reading and writing the filter table over nf_tables netlink, the way
// iptables-nft itself talks to the kernel, so that iptables-save (and
// kube-proxy's, the CNI's iptables) see exactly what iptables-restore
// would have written.
//
// The rules themselves are always first written by iptables-restore (the
// reference encoding of each iptables rule); the agent remembers the
// kernel's form of every chain it wrote that way (a template, keyed by the
// chains' iptables text) and writes the same chains into the next
// namespace directly, in one nf_tables transaction, with the namespace's
// own ipset indexes. Pods of one workload have the same chains, so a node
// with hundreds of pods starts a handful of processes instead of hundreds.

const (
	nftMsgNewTable = 0
	nftMsgGetTable = 1
	nftMsgDelTable = 2
	nftMsgNewChain = 3
	nftMsgGetChain = 4
	nftMsgDelChain = 5
	nftMsgNewRule  = 6
	nftMsgGetRule  = 7
	nftMsgDelRule  = 8
	nftMsgGetGen   = 16

	nftaTableName     = 1
	nftaTableFlags    = 2
	nftaTableUserdata = 6

	nftaChainTable    = 1
	nftaChainName     = 3
	nftaChainHook     = 4
	nftaChainPolicy   = 5
	nftaChainType     = 7
	nftaChainCounters = 8

	nftaRuleTable    = 1
	nftaRuleChain    = 2
	nftaRuleHandle   = 3
	nftaRuleExprs    = 4
	nftaRuleCompat   = 5
	nftaRuleUserdata = 7

	nftaRuleCompatProto = 1
	nftaRuleCompatFlags = 2

	nftaListElem = 1
	nftaExprName = 1
	nftaExprData = 2

	nftaMatchName = 1
	nftaMatchInfo = 3

	nftaImmData     = 2
	nftaDataVerdict = 2
	nftaVerdictCode = 1
	nftaVerdictName = 2
	nftJump         = 0xfffffffd // NFT_JUMP (-3)

	nftaCounterBytes   = 1
	nftaCounterPackets = 2

	nftaGenID = 1

	nfAccept = 1

	filterTable = "filter"
)

func nftMsg(typ uint16, flags uint16, attrs ...[]byte) nlmsg {
	return nlmsg{typ: nfnlSubsysNFTables<<8 | typ, flags: flags, family: unix.AF_INET, attrs: cat(attrs...)}
}

// nftRule is one rule of the filter table as the kernel dumps it.
type nftRule struct {
	chain   string
	handle  uint64
	exprs   []byte // NFTA_RULE_EXPRESSIONS' content, counters zeroed
	udata   []byte
	jumpTo  string // the chain a jump rule jumps to
	comment string // the text of its comment match
}

// sum identifies a rule's content (not its handle or counters).
func (r *nftRule) sum() string {
	h := sha256.New()
	h.Write(r.exprs)
	h.Write([]byte{0})
	h.Write(r.udata)
	return hex.EncodeToString(h.Sum(nil)[:12])
}

type nftChain struct {
	name   string
	base   bool
	policy uint32
	attrs  [][]byte // what recreates it: table, name, hook, type, policy, counters zeroed
}

// nftFilter is the namespace's ip filter table.
type nftFilter struct {
	genid  uint32
	table  bool
	tattrs [][]byte // name, flags, userdata
	chains map[string]*nftChain
	order  []string // chain names as dumped
	rules  []nftRule
}

// readFilter reads the ip filter table: chains and rules.
func (c *nfConn) readFilter() (*nftFilter, error) {
	f := &nftFilter{chains: map[string]*nftChain{}}
	gen, err := c.exchange([]nlmsg{nftMsg(nftMsgGetGen, 0)}, false, 0)
	if err != nil {
		return nil, fmt.Errorf("nf_tables generation: %w", err)
	}
	for _, g := range gen {
		f.genid = attrU32(getAttr(parseAttrs(g), nftaGenID))
	}
	tables, err := c.dump(nftMsg(nftMsgGetTable, 0))
	if err != nil {
		return nil, fmt.Errorf("nf_tables tables: %w", err)
	}
	for _, t := range tables {
		as := parseAttrs(t)
		if attrStr(getAttr(as, nftaTableName)) != filterTable {
			continue
		}
		f.table = true
		for _, a := range as {
			switch a.typ {
			case nftaTableName, nftaTableFlags, nftaTableUserdata:
				f.tattrs = append(f.tattrs, a.raw)
			}
		}
	}
	if !f.table {
		return f, nil
	}
	chains, err := c.dump(nftMsg(nftMsgGetChain, 0))
	if err != nil {
		return nil, fmt.Errorf("nf_tables chains: %w", err)
	}
	for _, m := range chains {
		as := parseAttrs(m)
		if attrStr(getAttr(as, nftaChainTable)) != filterTable {
			continue
		}
		ch := &nftChain{name: attrStr(getAttr(as, nftaChainName))}
		for _, a := range as {
			switch a.typ {
			case nftaChainHook:
				ch.base = true
				ch.attrs = append(ch.attrs, a.raw)
			case nftaChainPolicy:
				ch.policy = attrU32(a.data)
				ch.attrs = append(ch.attrs, a.raw)
			case nftaChainTable, nftaChainName, nftaChainType:
				ch.attrs = append(ch.attrs, a.raw)
			case nftaChainCounters:
				ch.attrs = append(ch.attrs, nlaNested(nftaChainCounters, nlaU64(nftaCounterBytes, 0), nlaU64(nftaCounterPackets, 0)))
			}
		}
		f.chains[ch.name] = ch
		f.order = append(f.order, ch.name)
	}
	rules, err := c.dump(nftMsg(nftMsgGetRule, 0, nlaStr(nftaRuleTable, filterTable)))
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("nf_tables rules: %w", err)
	}
	for _, m := range rules {
		as := parseAttrs(m)
		if attrStr(getAttr(as, nftaRuleTable)) != filterTable {
			continue
		}
		r := nftRule{chain: attrStr(getAttr(as, nftaRuleChain)), udata: getAttr(as, nftaRuleUserdata)}
		if h := getAttr(as, nftaRuleHandle); len(h) == 8 {
			r.handle = binary.BigEndian.Uint64(h)
		}
		r.exprs, r.jumpTo, r.comment = normalizeExprs(getAttr(as, nftaRuleExprs))
		f.rules = append(f.rules, r)
	}
	return f, nil
}

// normalizeExprs re-encodes a rule's expressions with counters reset, and
// finds its jump target and comment.
func normalizeExprs(b []byte) (out []byte, jumpTo, comment string) {
	for _, e := range parseAttrs(b) {
		if e.typ != nftaListElem {
			continue
		}
		as := parseAttrs(e.data)
		name := attrStr(getAttr(as, nftaExprName))
		data := getAttr(as, nftaExprData)
		switch name {
		case "counter":
			out = append(out, nlaNested(nftaListElem, nlaStr(nftaExprName, name))...)
			continue
		case "immediate":
			if v := getAttr(parseAttrs(getAttr(parseAttrs(data), nftaImmData)), nftaDataVerdict); v != nil {
				vs := parseAttrs(v)
				if attrU32(getAttr(vs, nftaVerdictCode)) == nftJump {
					jumpTo = attrStr(getAttr(vs, nftaVerdictName))
				}
			}
		case "match":
			ms := parseAttrs(data)
			if attrStr(getAttr(ms, nftaMatchName)) == "comment" {
				comment = attrStr(getAttr(ms, nftaMatchInfo))
			}
		}
		out = append(out, e.raw...)
	}
	return out, jumpTo, comment
}

// ours is Palisade's part of the table: one line per chain and per rule
// (content digests, in order), the base chains with a jump, whether a
// jump carries the new-table mark, and the jump rules.
func (f *nftFilter) ours() (lines []string, jumps map[string]bool, newTable bool, jumpRules []nftRule) {
	jumps = map[string]bool{}
	for _, name := range f.order {
		if _, ok := baseChain[name]; ok {
			lines = append(lines, ":"+name)
		}
	}
	for _, r := range f.rules {
		if _, ok := baseChain[r.chain]; ok {
			lines = append(lines, r.chain+" "+r.sum())
			continue
		}
		if base, ok := baseChain[r.jumpTo]; ok && r.chain == base {
			lines = append(lines, r.chain+" "+r.sum())
			jumps[r.jumpTo] = true
			jumpRules = append(jumpRules, r)
			if r.comment == jumpCommentNewTable {
				newTable = true
			}
		}
	}
	return lines, jumps, newTable, jumpRules
}

// Templates: the kernel form of chains iptables-restore wrote.
type tmplRule struct {
	exprs []byte
	udata []byte
	proto uint32   // the rule's -p, for the compat matches' and targets' checks
	sets  []string // the set each xt set match names, in order
}

type chainsTmpl struct {
	chains []string // as declared
	rules  map[string][]tmplRule

	// The rule messages built for one assignment of set indexes (the
	// namespaces of a workload's pods mostly number their sets alike).
	mu    sync.Mutex
	built map[string][]nlmsg // by the indexes of t.setNames(), in order; read-only
}

// setNames lists the sets the rules' set matches name, each once, in
// order.
func (t *chainsTmpl) setNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, ch := range t.chains {
		for _, r := range t.rules[ch] {
			for _, n := range r.sets {
				if !seen[n] {
					seen[n] = true
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// ruleMsgs returns the messages appending the template's rules with the
// sets at the given indexes (by name).
func (t *chainsTmpl) ruleMsgs(index map[string]uint16) []nlmsg {
	var key []byte
	for _, n := range t.setNames() {
		key = binary.BigEndian.AppendUint16(key, index[n])
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.built[string(key)]; ok {
		return m
	}
	var msgs []nlmsg
	for _, ch := range t.chains {
		for _, r := range t.rules[ch] {
			idx := make([]uint16, 0, len(r.sets))
			for _, name := range r.sets {
				idx = append(idx, index[name])
			}
			msgs = append(msgs, ruleMsg(ch, withSetIndexes(r.exprs, idx), r.udata, r.proto, true))
		}
	}
	if t.built == nil || len(t.built) >= 64 {
		t.built = map[string][]nlmsg{}
	}
	t.built[string(key)] = msgs
	return msgs
}

// maxTemplates bounds the chain templates kept.
const maxTemplates = 4096

var templates = struct {
	sync.Mutex
	chains map[string]*chainsTmpl // by chainText
	jumps  map[string]tmplRule    // by base chain + "|" + comment
	table  [][]byte               // the filter table as iptables creates it
	base   map[string][][]byte    // base chains as iptables creates them
}{chains: map[string]*chainsTmpl{}, jumps: map[string]tmplRule{}, base: map[string][][]byte{}}

// learn records what iptables-restore wrote for spec s in the namespace
// whose table is now f; text is s's chainText.
func learn(text string, s *spec, f *nftFilter) {
	byChain := map[string][]nftRule{}
	for _, r := range f.rules {
		byChain[r.chain] = append(byChain[r.chain], r)
	}
	t := &chainsTmpl{chains: s.chains(), rules: map[string][]tmplRule{}}
	lines := map[string][]string{}
	for _, l := range strings.Split(text, "\n") {
		if c, _, ok := strings.Cut(strings.TrimPrefix(l, "-A "), " "); ok && strings.HasPrefix(l, "-A ") {
			lines[c] = append(lines[c], l)
		}
	}
	ok := true
	for _, c := range t.chains {
		rs := byChain[c]
		if len(rs) != len(lines[c]) {
			ok = false
			break
		}
		for i, r := range rs {
			tr := tmplRule{exprs: r.exprs, udata: r.udata, sets: lineSets(lines[c][i])}
			tr.proto = uint32(protoNums[lineProto(lines[c][i])])
			if countSetMatches(r.exprs) != len(tr.sets) {
				ok = false
			}
			t.rules[c] = append(t.rules[c], tr)
		}
	}
	_, _, newTable, jumpRules := f.ours()
	templates.Lock()
	defer templates.Unlock()
	if ok {
		if len(templates.chains) >= maxTemplates {
			// Chains change with every policy version; forget the old
			// ones rather than keep them all (they are relearned).
			templates.chains = map[string]*chainsTmpl{}
		}
		templates.chains[text] = t
	}
	for _, r := range jumpRules {
		templates.jumps[r.chain+"|"+r.comment] = tmplRule{exprs: r.exprs, udata: r.udata}
	}
	if newTable {
		// The table and its base chains were made by iptables for Palisade.
		templates.table = f.tattrs
		for _, r := range jumpRules {
			if ch := f.chains[r.chain]; ch != nil && ch.base {
				templates.base[r.chain] = ch.attrs
			}
		}
	}
}

func lineSets(l string) []string {
	var out []string
	f := strings.Fields(l)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--match-set" {
			out = append(out, f[i+1])
		}
	}
	return out
}

func lineProto(l string) string {
	f := strings.Fields(l)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "-p" {
			return f[i+1]
		}
	}
	return ""
}

func countSetMatches(exprs []byte) int {
	n := 0
	for _, e := range parseAttrs(exprs) {
		as := parseAttrs(e.data)
		if attrStr(getAttr(as, nftaExprName)) == "match" && attrStr(getAttr(parseAttrs(getAttr(as, nftaExprData)), nftaMatchName)) == "set" {
			n++
		}
	}
	return n
}

// withSetIndexes rewrites the xt set matches of exprs to the namespace's
// indexes of the named sets (the first field of every xt_set_info).
func withSetIndexes(exprs []byte, idx []uint16) []byte {
	var out []byte
	k := 0
	for _, e := range parseAttrs(exprs) {
		as := parseAttrs(e.data)
		if attrStr(getAttr(as, nftaExprName)) != "match" {
			out = append(out, e.raw...)
			continue
		}
		data := parseAttrs(getAttr(as, nftaExprData))
		if attrStr(getAttr(data, nftaMatchName)) != "set" || k >= len(idx) {
			out = append(out, e.raw...)
			continue
		}
		var md []byte
		for _, a := range data {
			if a.typ == nftaMatchInfo && len(a.data) >= 2 {
				info := append([]byte(nil), a.data...)
				binary.NativeEndian.PutUint16(info, idx[k])
				md = append(md, nla(nftaMatchInfo, info)...)
				continue
			}
			md = append(md, a.raw...)
		}
		k++
		out = append(out, nlaNested(nftaListElem, nlaStr(nftaExprName, "match"), nla(nftaExprData|nlaFNested, md))...)
	}
	return out
}

var errNoTemplate = errors.New("no template")

func otherComment(c string) string {
	if c == jumpComment {
		return jumpCommentNewTable
	}
	return jumpComment
}

// withComment rewrites the text of exprs' comment match (xt_comment_info:
// a fixed 256-byte, NUL-padded string).
func withComment(exprs []byte, comment string) []byte {
	var out []byte
	for _, e := range parseAttrs(exprs) {
		as := parseAttrs(e.data)
		data := parseAttrs(getAttr(as, nftaExprData))
		if attrStr(getAttr(as, nftaExprName)) != "match" || attrStr(getAttr(data, nftaMatchName)) != "comment" {
			out = append(out, e.raw...)
			continue
		}
		var md []byte
		for _, a := range data {
			if a.typ == nftaMatchInfo && len(a.data) > len(comment) {
				info := make([]byte, len(a.data))
				copy(info, comment)
				md = append(md, nla(nftaMatchInfo, info)...)
				continue
			}
			md = append(md, a.raw...)
		}
		out = append(out, nlaNested(nftaListElem, nlaStr(nftaExprName, "match"), nla(nftaExprData|nlaFNested, md))...)
	}
	return out
}

// replicate writes spec s (whose chainText is text) into the namespace
// whose table is f in one nf_tables transaction, from the templates; it
// returns errNoTemplate when something it needs was never learned.
func (c *nfConn) replicate(text string, s *spec, f *nftFilter, newTable bool) error {
	_, jumps, _, _ := f.ours()
	templates.Lock()
	t := templates.chains[text]
	tableAttrs := templates.table
	comment := jumpComment
	if newTable {
		comment = jumpCommentNewTable
	}
	jumpT := map[string]tmplRule{}
	baseT := map[string][][]byte{}
	for _, ch := range s.chains() {
		base := baseChain[ch]
		if j, ok := templates.jumps[base+"|"+comment]; ok {
			jumpT[base] = j
		} else if j, ok := templates.jumps[base+"|"+otherComment(comment)]; ok {
			// The same jump with the other mark: only the comment differs.
			j.exprs = withComment(j.exprs, comment)
			jumpT[base] = j
		}
		if b, ok := templates.base[base]; ok {
			baseT[base] = b
		}
	}
	templates.Unlock()
	if t == nil {
		return errNoTemplate
	}
	var msgs []nlmsg
	if !f.table {
		if tableAttrs == nil {
			return errNoTemplate
		}
		msgs = append(msgs, nftMsg(nftMsgNewTable, unix.NLM_F_CREATE, tableAttrs...))
	}
	// In iptables-restore's order: its declared chains, then the base
	// chains its jumps need.
	for _, ch := range t.chains {
		if f.chains[ch] != nil {
			msgs = append(msgs, nftMsg(nftMsgDelRule, 0, nlaStr(nftaRuleTable, filterTable), nlaStr(nftaRuleChain, ch)))
		} else {
			msgs = append(msgs, nftMsg(nftMsgNewChain, unix.NLM_F_CREATE, nlaStr(nftaChainTable, filterTable), nlaStr(nftaChainName, ch)))
		}
	}
	for _, ch := range s.chains() {
		base := baseChain[ch]
		if jumps[ch] {
			continue
		}
		if _, ok := jumpT[base]; !ok {
			return errNoTemplate
		}
		if bc := f.chains[base]; bc == nil || !bc.base {
			if bc != nil || baseT[base] == nil {
				return errNoTemplate
			}
			msgs = append(msgs, nftMsg(nftMsgNewChain, unix.NLM_F_CREATE, baseT[base]...))
		}
	}
	index := map[string]uint16{}
	for _, name := range t.setNames() {
		i, err := c.setIndex(name)
		if err != nil {
			return err
		}
		index[name] = i
	}
	msgs = append(msgs, t.ruleMsgs(index)...)
	for _, ch := range s.chains() {
		if !jumps[ch] {
			j := jumpT[baseChain[ch]]
			msgs = append(msgs, ruleMsg(baseChain[ch], j.exprs, j.udata, 0, false))
		}
	}
	_, err := c.exchange(msgs, true, f.genid)
	return err
}

func ruleMsg(chain string, exprs, udata []byte, proto uint32, appendIt bool) nlmsg {
	attrs := [][]byte{nlaStr(nftaRuleTable, filterTable), nlaStr(nftaRuleChain, chain), nla(nftaRuleExprs|nlaFNested, exprs)}
	if proto != 0 {
		attrs = append(attrs, nlaNested(nftaRuleCompat, nlaU32(nftaRuleCompatProto, proto), nlaU32(nftaRuleCompatFlags, 0)))
	}
	if len(udata) > 0 {
		attrs = append(attrs, nla(nftaRuleUserdata, udata))
	}
	flags := uint16(unix.NLM_F_CREATE)
	if appendIt {
		flags |= unix.NLM_F_APPEND
	}
	return nftMsg(nftMsgNewRule, flags, attrs...)
}

// removeOurs deletes Palisade's jumps and chains in one transaction, and
// the filter table when Palisade created it and nothing else is in it.
func (c *nfConn) removeOurs() error {
	for attempt := 0; ; attempt++ {
		f, err := c.readFilter()
		if err != nil {
			return err
		}
		lines, _, newTable, jumpRules := f.ours()
		if len(lines) == 0 {
			return nil
		}
		var msgs []nlmsg
		for _, r := range jumpRules {
			msgs = append(msgs, nftMsg(nftMsgDelRule, 0, nlaStr(nftaRuleTable, filterTable), nlaStr(nftaRuleChain, r.chain), nlaU64(nftaRuleHandle, r.handle)))
		}
		for _, ch := range []string{ChainIn, ChainOut, ChainFwd} {
			if f.chains[ch] != nil {
				msgs = append(msgs, nftMsg(nftMsgDelRule, 0, nlaStr(nftaRuleTable, filterTable), nlaStr(nftaRuleChain, ch)),
					nftMsg(nftMsgDelChain, 0, nlaStr(nftaChainTable, filterTable), nlaStr(nftaChainName, ch)))
			}
		}
		if newTable && f.emptyWithout(jumpRules) {
			msgs = append(msgs, nftMsg(nftMsgDelTable, 0, nlaStr(nftaTableName, filterTable)))
		}
		_, err = c.exchange(msgs, true, f.genid)
		if errors.Is(err, unix.ERESTART) && attempt < 3 {
			continue // the table changed meanwhile: read it again
		}
		return err
	}
}

// emptyWithout reports a table that, without Palisade's chains and jumps,
// holds only accepting base chains with no rule (iptables-save would show
// an empty filter table).
func (f *nftFilter) emptyWithout(jumpRules []nftRule) bool {
	for name, ch := range f.chains {
		if _, ok := baseChain[name]; ok {
			continue
		}
		switch name {
		case "INPUT", "FORWARD", "OUTPUT":
			if !ch.base || ch.policy != nfAccept {
				return false
			}
		default:
			return false
		}
	}
	jump := map[uint64]bool{}
	for _, r := range jumpRules {
		jump[r.handle] = true
	}
	for _, r := range f.rules {
		if _, ok := baseChain[r.chain]; !ok && !jump[r.handle] {
			return false
		}
	}
	return true
}
