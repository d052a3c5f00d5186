package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/lab/app"
)

// External names the external host in reachability probes.
const External = "external"

// ReachOptions choose the probes of a reachability matrix. Peers are named
// "NS/POD" (a pod by its name, or by its Deployment's name: "x/a" is the
// first pod of Deployment a in namespace x), "external" (the external host,
// 203.0.113.10, as source or destination) or a node ("node1" or its
// Kubernetes name; sources only: nodes serve nothing).
type ReachOptions struct {
	From []string // default DefaultPeers
	To   []string // default DefaultPeers
	// Ports default to 80 and 81, Protocols to tcp and udp.
	Ports     []int32
	Protocols []string
	// Timeout bounds each probe, connecting and answering (default 1s). A
	// probe that gets no answer by then is blocked.
	Timeout time.Duration
	// Parallel is how many probes run at once (default 512: the whole
	// model matrix, so everything blocked costs one Timeout, not several).
	Parallel int
}

// Probe is one (source, destination, port, protocol) tried: reachable when
// the destination itself answered — over TCP an HTTP answer, over UDP a
// datagram, each naming the pod that answered. Anything else (refused,
// unreachable, no answer in time, answered by someone else) is blocked, and
// Error says what happened.
type Probe struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Port      int32  `json:"port"`
	Protocol  string `json:"protocol"` // tcp or udp
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// Case names the probe without its outcome: "x/a → y/b tcp/80".
func (p Probe) Case() string {
	return fmt.Sprintf("%s → %s %s/%d", p.From, p.To, p.Protocol, p.Port)
}

// DefaultPeers are the pods of the NetworkPolicy test model ("x/a" ...
// "z/c") when the lab runs it, else every pod of the lab as NS/NAME.
func DefaultPeers(st Status) []string {
	var model, all []string
	for _, p := range st.Pods {
		all = append(all, p.Namespace+"/"+p.Name)
		if slices.Contains(app.NetPolNamespaces, p.Namespace) && slices.Contains(app.NetPolPods, p.App) {
			if name := p.Namespace + "/" + p.App; !slices.Contains(model, name) {
				model = append(model, name)
			}
		}
	}
	if len(model) > 0 {
		slices.Sort(model)
		return model
	}
	return all
}

// peer is a resolved probe endpoint.
type peer struct {
	name   string
	nsPath string
	ip     string
	who    string // how its servers name themselves in answers
}

func resolvePeer(st Status, name string, source bool) (peer, error) {
	if name == External {
		if len(st.External) == 0 {
			return peer{}, fmt.Errorf("lab %s has no external host", st.Name)
		}
		x := st.External[0]
		return peer{name: name, nsPath: x.NetNSPath, ip: x.IP, who: x.Name}, nil
	}
	if n, ok := st.Node(name); ok {
		if !source {
			return peer{}, fmt.Errorf("%s: a node serves nothing; give it as a source (--from)", name)
		}
		return peer{name: name, nsPath: n.NetNSPath, ip: n.IP}, nil
	}
	if !strings.Contains(name, "/") {
		return peer{}, fmt.Errorf("%q: want NAMESPACE/POD, %q or a node (node1, ...)", name, External)
	}
	p, err := st.FindPod(name)
	if err != nil {
		return peer{}, err
	}
	return peer{name: name, nsPath: p.NetNSPath, ip: p.IP, who: p.Namespace + "/" + p.Name}, nil
}

// Reach tries every (source, destination, port, protocol) of opt on the
// lab described by st, in parallel, from inside the sources' network
// namespaces. Probes come back grouped by protocol, then port, then source,
// then destination, in the order opt names them (the table's order). Bad
// options are an error before anything is sent.
func Reach(ctx context.Context, st Status, opt ReachOptions) ([]Probe, error) {
	if len(opt.From) == 0 {
		opt.From = DefaultPeers(st)
	}
	if len(opt.To) == 0 {
		opt.To = DefaultPeers(st)
	}
	if len(opt.From) == 0 || len(opt.To) == 0 {
		return nil, fmt.Errorf("lab %s has no pods to probe", st.Name)
	}
	if len(opt.Ports) == 0 {
		opt.Ports = app.NetPolPorts
	}
	if len(opt.Protocols) == 0 {
		opt.Protocols = []string{"tcp", "udp"}
	}
	if opt.Timeout <= 0 {
		opt.Timeout = time.Second
	}
	if opt.Parallel <= 0 {
		opt.Parallel = 512
	}
	for _, p := range opt.Ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("port %d: out of range 1-65535", p)
		}
	}
	protos := make([]string, len(opt.Protocols))
	for i, p := range opt.Protocols {
		protos[i] = strings.ToLower(p)
		if protos[i] != "tcp" && protos[i] != "udp" {
			return nil, fmt.Errorf("protocol %q: want tcp or udp", p)
		}
	}
	var froms, tos []peer
	for _, n := range opt.From {
		p, err := resolvePeer(st, n, true)
		if err != nil {
			return nil, fmt.Errorf("--from %w", err)
		}
		froms = append(froms, p)
	}
	for _, n := range opt.To {
		p, err := resolvePeer(st, n, false)
		if err != nil {
			return nil, fmt.Errorf("--to %w", err)
		}
		tos = append(tos, p)
	}
	n := len(protos) * len(opt.Ports) * len(froms) * len(tos)
	probes := make([]Probe, 0, n)
	ends := make([][2]peer, 0, n)
	for _, proto := range protos {
		for _, port := range opt.Ports {
			for _, f := range froms {
				for _, t := range tos {
					probes = append(probes, Probe{From: f.name, To: t.name, Port: port, Protocol: proto})
					ends = append(ends, [2]peer{f, t})
				}
			}
		}
	}
	sem := make(chan struct{}, opt.Parallel)
	var wg sync.WaitGroup
	for i := range probes {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		case sem <- struct{}{}:
		}
		wg.Go(func() {
			defer func() { <-sem }()
			probe(&probes[i], ends[i][0], ends[i][1], opt.Timeout)
		})
	}
	wg.Wait()
	return probes, ctx.Err()
}

// Reach is Reach on the lab's current topology.
func (l *Lab) Reach(ctx context.Context, opt ReachOptions) ([]Probe, error) {
	return Reach(ctx, l.Status(), opt)
}

// probe tries one case and fills in its outcome.
func probe(p *Probe, from, to peer, timeout time.Duration) {
	addr := net.JoinHostPort(to.ip, strconv.Itoa(int(p.Port)))
	deadline := time.Now().Add(timeout)
	var answer, want string
	var err error
	if p.Protocol == "tcp" {
		answer, err = app.GetBy(from.nsPath, addr, deadline)
		want = fmt.Sprintf("%s port %d ", to.who, p.Port)
	} else {
		answer, err = app.Exchange(from.nsPath, addr, []byte("palisade lab reach "+p.Case()), deadline)
		want = fmt.Sprintf("%s port %d/udp ", to.who, p.Port)
	}
	switch {
	case err != nil:
		p.Error = err.Error()
	case !strings.HasPrefix(answer, want):
		first, _, _ := strings.Cut(answer, "\n")
		p.Error = fmt.Sprintf("answered by someone else: %q", first)
	default:
		p.Reachable = true
	}
}

// FormatTable prints probes as the upstream NetworkPolicy tests print a
// reachability matrix, one table per protocol and port: a title line
// "tcp/80", a header "-" and the destinations, then one row per source with
// "." (reachable) or "X" (blocked) per destination, tab-separated, "?" where
// no probe was made. Tables are separated by a blank line.
func FormatTable(probes []Probe) string {
	type group struct {
		proto string
		port  int32
	}
	var groups []group
	var froms, tos []string
	got := map[group]map[[2]string]bool{}
	for _, p := range probes {
		g := group{p.Protocol, p.Port}
		if got[g] == nil {
			groups = append(groups, g)
			got[g] = map[[2]string]bool{}
		}
		got[g][[2]string{p.From, p.To}] = p.Reachable
		if !slices.Contains(froms, p.From) {
			froms = append(froms, p.From)
		}
		if !slices.Contains(tos, p.To) {
			tos = append(tos, p.To)
		}
	}
	var b strings.Builder
	for i, g := range groups {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s/%d\n-\t%s\n", g.proto, g.port, strings.Join(tos, "\t"))
		for _, f := range froms {
			b.WriteString(f)
			for _, t := range tos {
				mark := "?"
				if ok, seen := got[g][[2]string{f, t}]; seen {
					mark = map[bool]string{true: ".", false: "X"}[ok]
				}
				b.WriteString("\t" + mark)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// ParseTable reads what FormatTable prints (whitespace between cells may be
// tabs or spaces), so an expected matrix can be written as text. Cells "?"
// are left out; anything else than ".", "X" or "?" is an error naming the
// line.
func ParseTable(s string) ([]Probe, error) {
	var out []Probe
	var proto string
	var port int32
	var tos []string
	sc := bufio.NewScanner(strings.NewReader(s))
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
			proto, tos = "", nil
		case proto == "":
			pr, po, ok := strings.Cut(f[0], "/")
			n, err := strconv.Atoi(po)
			if len(f) != 1 || !ok || (pr != "tcp" && pr != "udp") || err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("line %d: %q: want a title like tcp/80", line, sc.Text())
			}
			proto, port = pr, int32(n)
		case tos == nil:
			if f[0] != "-" || len(f) < 2 {
				return nil, fmt.Errorf("line %d: want the header \"-\" followed by the destinations", line)
			}
			tos = f[1:]
		default:
			if len(f) != len(tos)+1 {
				return nil, fmt.Errorf("line %d: %d cells for %d destinations", line, len(f)-1, len(tos))
			}
			for i, mark := range f[1:] {
				switch mark {
				case ".", "X":
					out = append(out, Probe{From: f[0], To: tos[i], Port: port, Protocol: proto, Reachable: mark == "."})
				case "?":
				default:
					return nil, fmt.Errorf("line %d: cell %q for %s: want \".\", \"X\" or \"?\"", line, mark, tos[i])
				}
			}
		}
	}
	return out, sc.Err()
}

// Diff lists, one line each, the cases of want whose outcome differs in
// got or that got lacks ("x/a → y/b tcp/80: want reachable, got blocked
// (connection refused)").
func Diff(want, got []Probe) []string {
	have := map[string]Probe{}
	for _, p := range got {
		have[p.Case()] = p
	}
	word := map[bool]string{true: "reachable", false: "blocked"}
	var out []string
	for _, w := range want {
		g, ok := have[w.Case()]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: want %s, not probed", w.Case(), word[w.Reachable]))
		case g.Reachable != w.Reachable:
			msg := fmt.Sprintf("%s: want %s, got %s", w.Case(), word[w.Reachable], word[g.Reachable])
			if g.Error != "" {
				msg += " (" + g.Error + ")"
			}
			out = append(out, msg)
		}
	}
	return out
}
