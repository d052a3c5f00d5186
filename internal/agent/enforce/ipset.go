package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/ruleset"
)

// ipset over netlink (the protocol of the ipset tool, without the tool):
// one dump lists every set with its members, and members are added and
// deleted many per message.
const (
	ipsetProtocol = 6

	ipsetCmdCreate  = 2
	ipsetCmdDestroy = 3
	ipsetCmdList    = 7
	ipsetCmdAdd     = 9
	ipsetCmdDel     = 10
	ipsetCmdType    = 13

	ipsetAttrProtocol = 1
	ipsetAttrSetname  = 2
	ipsetAttrTypename = 3
	ipsetAttrRevision = 4
	ipsetAttrFamily   = 5
	ipsetAttrFlags    = 6
	ipsetAttrData     = 7
	ipsetAttrADT      = 8
	ipsetAttrLineno   = 9

	ipsetAttrIP    = 1
	ipsetAttrCIDR  = 3
	ipsetAttrPort  = 4
	ipsetAttrProto = 7
	ipsetAttrIPv4  = 1

	ipsetFlagListHeader = 1 << 2
	ipsetErrBusy        = 4100

	// Entries per add/del message (a message must fit the socket buffer).
	ipsetBatch = 2000
)

// Create-time and header attributes (linux/netfilter/ipset/ip_set.h:
// they follow IPSET_ATTR_CADT_MAX = 16).
const (
	ipsetAttrMaxElem  = 19
	ipsetAttrElements = 24
)

func ipsetMsg(cmd uint16, flags uint16, attrs ...[]byte) nlmsg {
	return nlmsg{typ: nfnlSubsysIPSet<<8 | cmd, flags: flags, family: unix.AF_INET,
		attrs: cat(append([][]byte{nlaU8(ipsetAttrProtocol, ipsetProtocol)}, attrs...)...)}
}

// ipsetInfo is what a listing says about one set.
type ipsetInfo struct {
	typ      ruleset.SetType
	elements int
	members  []string // only in a full listing
}

// listSets lists the sets named with prefix: with members (full) or only
// their headers (the element count).
func (c *nfConn) listSets(prefix string, full bool) (map[string]*ipsetInfo, error) {
	var attrs [][]byte
	if !full {
		attrs = append(attrs, nla(ipsetAttrFlags|nlaFNetByteorder, be32(ipsetFlagListHeader)))
	}
	msgs, err := c.dump(ipsetMsg(ipsetCmdList, 0, attrs...))
	if err != nil {
		return nil, fmt.Errorf("ipset list: %w", err)
	}
	out := map[string]*ipsetInfo{}
	for _, m := range msgs {
		as := parseAttrs(m)
		name := attrStr(getAttr(as, ipsetAttrSetname))
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		s := out[name]
		if s == nil {
			s = &ipsetInfo{}
			out[name] = s
		}
		if t := getAttr(as, ipsetAttrTypename); t != nil {
			s.typ = ruleset.SetType(attrStr(t))
		}
		if d := getAttr(as, ipsetAttrData); d != nil {
			if e := getAttr(parseAttrs(d), ipsetAttrElements); e != nil {
				s.elements = int(attrU32(e))
			}
		}
		if adt := getAttr(as, ipsetAttrADT); adt != nil && full {
			for _, e := range parseAttrs(adt) {
				if e.typ == ipsetAttrData {
					if m, ok := decodeMember(s.typ, parseAttrs(e.data)); ok {
						s.members = append(s.members, m)
					}
				}
			}
		}
	}
	for _, s := range out {
		sort.Strings(s.members)
	}
	return out, nil
}

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 132: "sctp", 136: "udplite"}
var protoNums = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}

// decodeMember writes an entry the way `ipset save` prints it.
func decodeMember(t ruleset.SetType, as []attr) (string, bool) {
	ipn := getAttr(as, ipsetAttrIP)
	if ipn == nil {
		return "", false
	}
	v4 := getAttr(parseAttrs(ipn), ipsetAttrIPv4)
	if len(v4) != 4 {
		return "", false
	}
	ip := netip.AddrFrom4([4]byte(v4)).String()
	switch t {
	case ruleset.HashNet:
		if c := getAttr(as, ipsetAttrCIDR); len(c) == 1 && c[0] != 32 {
			return ip + "/" + strconv.Itoa(int(c[0])), true
		}
		return ip, true
	case ruleset.HashIPPort:
		port, proto := getAttr(as, ipsetAttrPort), getAttr(as, ipsetAttrProto)
		if len(port) != 2 || len(proto) != 1 {
			return "", false
		}
		name := protoNames[proto[0]]
		if name == "" {
			name = strconv.Itoa(int(proto[0]))
		}
		return fmt.Sprintf("%s,%s:%d", ip, name, binary.BigEndian.Uint16(port)), true
	}
	return ip, true
}

// encodeMember is decodeMember's inverse: the IPSET_ATTR_DATA of one entry.
func encodeMember(t ruleset.SetType, m string) ([]byte, error) {
	addr, rest, _ := strings.Cut(m, ",")
	var bits = -1
	if t == ruleset.HashNet {
		if a, b, ok := strings.Cut(addr, "/"); ok {
			n, err := strconv.Atoi(b)
			if err != nil {
				return nil, fmt.Errorf("member %q: prefix length", m)
			}
			addr, bits = a, n
		}
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return nil, fmt.Errorf("member %q: want an IPv4 address (sets are family inet)", m)
	}
	v4 := a.As4()
	parts := [][]byte{nlaNested(ipsetAttrIP, nla(ipsetAttrIPv4|nlaFNetByteorder, v4[:]))}
	if bits >= 0 {
		parts = append(parts, nlaU8(ipsetAttrCIDR, uint8(bits)))
	}
	if t == ruleset.HashIPPort {
		proto, port, _ := strings.Cut(rest, ":")
		pn, ok := protoNums[proto]
		n, err := strconv.ParseUint(port, 10, 16)
		if !ok || err != nil {
			return nil, fmt.Errorf("member %q: want ADDRESS,PROTO:PORT", m)
		}
		b := make([]byte, 2)
		binary.BigEndian.PutUint16(b, uint16(n))
		parts = append(parts, nla(ipsetAttrPort|nlaFNetByteorder, b), nlaU8(ipsetAttrProto, pn))
	}
	return nlaNested(ipsetAttrData, parts...), nil
}

// ipsetRevisions caches the newest revision of each set type the kernel
// has (what the ipset tool creates too).
var ipsetRevisions sync.Map

func (c *nfConn) typeRevision(t ruleset.SetType) (uint8, error) {
	if r, ok := ipsetRevisions.Load(t); ok {
		return r.(uint8), nil
	}
	data, err := c.exchange([]nlmsg{ipsetMsg(ipsetCmdType, 0, nlaStr(ipsetAttrTypename, string(t)), nlaU8(ipsetAttrFamily, unix.AF_INET))}, false, 0)
	if err != nil {
		return 0, fmt.Errorf("ipset type %s: %w", t, ipsetError(err))
	}
	for _, d := range data {
		if r := getAttr(parseAttrs(d), ipsetAttrRevision); len(r) == 1 {
			ipsetRevisions.Store(t, r[0])
			return r[0], nil
		}
	}
	return 0, fmt.Errorf("ipset type %s: the kernel reported no revision", t)
}

// syncSets makes the namespace's sets named with SetPrefix hold exactly
// want: missing sets are created, members added and deleted one by one
// (many per message), so a changed membership never touches a rule. It
// returns the number of changes and the sets of have that want no longer
// has (destroyed by the caller once no rule refers to them).
func (c *nfConn) syncSets(have map[string]*ipsetInfo, want []ruleset.IPSet) (changes int, stale []string, err error) {
	var msgs []nlmsg
	wanted := map[string]bool{}
	for _, s := range want {
		wanted[s.Name] = true
		cur := have[s.Name]
		if cur != nil && cur.typ != s.Type {
			// Names are derived from type and meaning; a clash is someone
			// else's set.
			return changes, nil, fmt.Errorf("set %s exists with type %s, want %s", s.Name, cur.typ, s.Type)
		}
		if cur == nil {
			rev, err := c.typeRevision(s.Type)
			if err != nil {
				return changes, nil, err
			}
			msgs = append(msgs, ipsetMsg(ipsetCmdCreate, 0, nlaStr(ipsetAttrSetname, s.Name), nlaStr(ipsetAttrTypename, string(s.Type)),
				nlaU8(ipsetAttrRevision, rev), nlaU8(ipsetAttrFamily, unix.AF_INET),
				nlaNested(ipsetAttrData, nla(ipsetAttrMaxElem|nlaFNetByteorder, be32(1<<20)))))
			cur = &ipsetInfo{}
			changes++
		}
		if len(cur.members) == 0 && cur.elements == 0 {
			// A new or empty set (every pod's first programming): the
			// messages that fill it are the same in every namespace.
			e, err := encodedMembers(s)
			if err != nil {
				return changes, nil, err
			}
			msgs = append(msgs, e.add...)
			changes += e.n
			continue
		}
		haveM := make(map[string]bool, len(cur.members))
		for _, m := range cur.members {
			haveM[m] = true
		}
		wantM := make(map[string]bool, len(s.Members))
		var add, del [][]byte
		for _, m := range s.Members {
			m = canonicalMember(s.Type, m)
			wantM[m] = true
			if !haveM[m] {
				e, err := encodeMember(s.Type, m)
				if err != nil {
					return changes, nil, fmt.Errorf("set %s: %w", s.Name, err)
				}
				add = append(add, e)
			}
		}
		for _, m := range cur.members {
			if !wantM[m] {
				e, err := encodeMember(s.Type, m)
				if err != nil {
					return changes, nil, fmt.Errorf("set %s: %w", s.Name, err)
				}
				del = append(del, e)
			}
		}
		changes += len(add) + len(del)
		msgs = append(msgs, adtMsgs(ipsetCmdAdd, s.Name, add)...)
		msgs = append(msgs, adtMsgs(ipsetCmdDel, s.Name, del)...)
	}
	for name := range have {
		if !wanted[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	if len(msgs) > 0 {
		if _, err := c.exchange(msgs, false, 0); err != nil {
			return changes, nil, fmt.Errorf("ipset: %w", ipsetError(err))
		}
	}
	return changes, stale, nil
}

// adtMsgs are the messages adding (cmd ipsetCmdAdd) or deleting the
// encoded entries es, many per message.
func adtMsgs(cmd uint16, set string, es [][]byte) []nlmsg {
	var msgs []nlmsg
	for len(es) > 0 {
		n := min(len(es), ipsetBatch)
		// Without NLM_F_EXCL the kernel ignores an entry that is already
		// there (add) or not there (del), like -exist. (The kernel wants a
		// line number with a list of entries.)
		msgs = append(msgs, ipsetMsg(cmd, 0, nlaStr(ipsetAttrSetname, set), nlaNested(ipsetAttrADT, es[:n]...),
			nla(ipsetAttrLineno|nlaFNetByteorder, be32(0))))
		es = es[n:]
	}
	return msgs
}

// setEncoding is a set's content encoded once for every namespace that
// gets it: the messages that fill it when empty, and its number of
// distinct members. Pods of a workload share their sets; a node with
// hundreds of them encodes each set once instead of once per pod.
type setEncoding struct {
	once sync.Once
	add  []nlmsg // read-only: exchange copies them into its buffer
	n    int
	err  error
}

// maxSetEncodings bounds the encodings kept (they are re-made).
const maxSetEncodings = 1024

var setEncodings = struct {
	sync.Mutex
	m map[string]*setEncoding
}{m: map[string]*setEncoding{}}

// encodedMembers returns s's encoding. Sets with a Digest (Apply computes
// it from the members) are encoded once per name, type and digest; others
// (the node's READY set) each time.
func encodedMembers(s ruleset.IPSet) (*setEncoding, error) {
	var e *setEncoding
	if s.Digest == "" {
		e = &setEncoding{}
	} else {
		key := s.Name + "\x00" + string(s.Type) + "\x00" + s.Digest
		setEncodings.Lock()
		if e = setEncodings.m[key]; e == nil {
			if len(setEncodings.m) >= maxSetEncodings {
				setEncodings.m = map[string]*setEncoding{}
			}
			e = &setEncoding{}
			setEncodings.m[key] = e
		}
		setEncodings.Unlock()
	}
	e.once.Do(func() {
		seen := make(map[string]bool, len(s.Members))
		es := make([][]byte, 0, len(s.Members))
		for _, m := range s.Members {
			m = canonicalMember(s.Type, m)
			if seen[m] {
				continue
			}
			seen[m] = true
			b, err := encodeMember(s.Type, m)
			if err != nil {
				e.err = fmt.Errorf("set %s: %w", s.Name, err)
				return
			}
			es = append(es, b)
		}
		e.add, e.n = adtMsgs(ipsetCmdAdd, s.Name, es), len(es)
	})
	return e, e.err
}

// destroySets destroys the named sets. A set a rule referred to stays
// busy for a moment after the rule is gone (nf_tables releases the
// expressions of deleted rules after the transaction, asynchronously):
// that is waited for, up to 2 s.
func (c *nfConn) destroySets(names []string) error {
	deadline := time.Now().Add(2 * time.Second)
	for len(names) > 0 {
		var busy []string
		for _, n := range names {
			_, err := c.exchange([]nlmsg{ipsetMsg(ipsetCmdDestroy, 0, nlaStr(ipsetAttrSetname, n))}, false, 0)
			switch {
			case err == nil, errors.Is(err, unix.ENOENT):
			case errors.Is(err, unix.Errno(ipsetErrBusy)) && time.Now().Before(deadline):
				busy = append(busy, n)
			default:
				return fmt.Errorf("ipset destroy %s: %w", n, ipsetError(err))
			}
		}
		if names = busy; len(names) > 0 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// ipsetError names ipset's own error numbers.
func ipsetError(err error) error {
	var e unix.Errno
	if !errors.As(err, &e) || e < 4096 {
		return err
	}
	names := map[unix.Errno]string{4097: "protocol error", 4098: "unknown set type", 4099: "maximal number of sets reached",
		ipsetErrBusy: "set is in use by a rule", 4101: "second set exists", 4102: "set type mismatch", 4103: "element exists/set exists",
		4104: "invalid CIDR", 4105: "invalid netmask", 4106: "invalid family", 4108: "set is referenced"}
	if n, ok := names[e]; ok {
		return fmt.Errorf("%s (ipset error %d)", n, int(e))
	}
	return fmt.Errorf("ipset error %d", int(e))
}
