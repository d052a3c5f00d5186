package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
)

// newLabCmd is `palisade lab`: the network-namespace cluster.
func newLabCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A multi-node Kubernetes network in Linux network namespaces, running sock-shop and the NetworkPolicy test model (root)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if os.Geteuid() != 0 {
				return errors.New("palisade lab needs root: it creates network namespaces, veths and iptables rules (try sudo)")
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&name, "name", "lab", "lab name (lower-case letters and digits)")
	cmd.AddCommand(newLabUpCmd(&name), newLabDownCmd(&name), newLabStatusCmd(&name),
		newLabExecCmd(&name), newLabNodeExecCmd(&name), newLabExtExecCmd(&name), newLabTrafficCmd(&name),
		newLabReachCmd(&name))
	return cmd
}

func newLabUpCmd(name *string) *cobra.Command {
	cfg := lab.Config{}
	var mode string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab and serve it in the foreground until interrupted or `lab down`",
		Long: `Build the lab's namespaces, register its nodes in the API server, deploy the
app and keep running as the lab's scheduler, kubelet, kube-proxy and app
servers. Stop it with Ctrl-C or ` + "`palisade lab down`" + ` from another shell; both
remove everything it made. Without --kubeconfig the shared dev API server
(palisade dev kube) is used, and started if needed.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Name, cfg.Mode = *name, lab.Mode(mode)
			cfg.WaitNamespacesGone = true // down leaves nothing behind
			cfg.Logger = slog.New(slog.NewTextHandler(c.ErrOrStderr(), nil))
			if cfg.Kubeconfig == "" {
				cl, err := devkube.Up(ctx, c.ErrOrStderr())
				if err != nil {
					return fmt.Errorf("dev API server: %w", err)
				}
				cfg.Kubeconfig = cl.Kubeconfig
			}
			l, err := lab.Up(ctx, cfg)
			if err != nil {
				return err
			}
			st := l.Status()
			fmt.Fprintf(c.OutOrStdout(), "lab %s ready: %d nodes (%s), %d pods, %d services; kubeconfig %s\n",
				st.Name, len(st.Nodes), st.Mode, len(st.Pods), len(st.Services), cfg.Kubeconfig)
			<-ctx.Done()
			fmt.Fprintf(c.ErrOrStderr(), "lab %s: shutting down\n", st.Name)
			return l.Down()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", 2, "number of nodes")
	f.StringVar(&mode, "mode", "direct", "inter-node pod network: direct or vxlan")
	f.StringVar(&cfg.App, "app", "sockshop", `applications to deploy, comma-separated: sockshop, netpol (the upstream NetworkPolicy test model: namespaces x, y, z × pods a, b, c); "" for none`)
	f.IntVar(&cfg.Replicas, "replicas", 1, "replicas per deployment")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "API server to register in (default: the shared dev API server)")
	f.DurationVar(&cfg.ProbePeriod, "probe-period", 10*time.Second, "kubelet-style probe period")
	return cmd
}

func newLabDownCmd(name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Stop the lab and remove every namespace, interface, rule, process and API object it made",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			start := time.Now()
			if err := lab.Remove(*name, "", 15*time.Second); err != nil {
				return err
			}
			left, err := lab.Leftovers(*name)
			if err != nil {
				return err
			}
			if len(left) > 0 {
				return fmt.Errorf("lab %s: namespaces left: %v", *name, left)
			}
			fmt.Fprintf(c.OutOrStdout(), "lab %s removed in %s\n", *name, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}

func newLabStatusCmd(name *string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's nodes, pods, services and external host",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := lab.ReadState(lab.StateDir(*name))
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st.Status)
			}
			w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "lab %s (%s, pid %d, %s)\n\nNODE\tIP\tPOD CIDR\tNETNS\n", st.Name, st.Status.Mode, st.PID, st.Phase)
			for _, n := range st.Status.Nodes {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Name, n.IP, n.PodCIDR, n.NetNS)
			}
			fmt.Fprintf(w, "\nPOD\tAPP\tNODE\tIP\tPORTS\n")
			for _, p := range st.Status.Pods {
				var ports []string
				for _, n := range p.Ports {
					ports = append(ports, fmt.Sprintf("%d/tcp", n))
				}
				for _, n := range p.UDPPorts {
					ports = append(ports, fmt.Sprintf("%d/udp", n))
				}
				fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.App, p.Node, p.IP, strings.Join(ports, " "))
			}
			fmt.Fprintf(w, "\nSERVICE\tTYPE\tCLUSTER IP\tPORTS\n")
			for _, s := range st.Status.Services {
				ports := ""
				for _, p := range s.Ports {
					ports += fmt.Sprintf("%d→%d", p.Port, p.TargetPort)
					if p.NodePort != 0 {
						ports += fmt.Sprintf(" (node %d)", p.NodePort)
					}
					ports += " "
				}
				fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\n", s.Namespace, s.Name, s.Type, s.ClusterIP, ports)
			}
			for _, x := range st.Status.External {
				fmt.Fprintf(w, "\nEXTERNAL %s\t%s\t%v\n", x.Name, x.IP, x.Ports)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// runInNamespace runs the command after "--" in the namespace picked by pick
// and exits with the command's exit code.
func runInNamespace(c *cobra.Command, args []string, name string, pick func(lab.Status, []string) (string, error)) error {
	dash := c.ArgsLenAtDash()
	if dash < 0 || dash >= len(args) {
		return errors.New("give the command after --")
	}
	st, err := lab.ReadState(lab.StateDir(name))
	if err != nil {
		return err
	}
	path, err := pick(st.Status, args[:dash])
	if err != nil {
		return err
	}
	code, err := lab.RunAttached(path, args[dash:])
	if err != nil {
		return err
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

// newLabInNSCmd is a command that runs CMD... in the namespace that pick
// finds from the one argument before "--" (or none when target is "").
func newLabInNSCmd(name *string, use, target, short string, pick func(lab.Status, string) (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return runInNamespace(c, args, *name, func(st lab.Status, pre []string) (string, error) {
				if want := map[bool]int{true: 0, false: 1}[target == ""]; len(pre) != want {
					return "", fmt.Errorf("give %d argument(s) before --: %s", want, target)
				}
				arg := ""
				if len(pre) == 1 {
					arg = pre[0]
				}
				return pick(st, arg)
			})
		},
	}
}

func newLabExecCmd(name *string) *cobra.Command {
	return newLabInNSCmd(name, "exec NAMESPACE/POD_OR_DEPLOYMENT -- CMD...", "NAMESPACE/POD_OR_DEPLOYMENT",
		"Run a command in a pod's network namespace (a deployment picks its first pod)",
		func(st lab.Status, target string) (string, error) {
			p, err := st.FindPod(target)
			return p.NetNSPath, err
		})
}

func newLabNodeExecCmd(name *string) *cobra.Command {
	return newLabInNSCmd(name, "node-exec NODE -- CMD...", "NODE",
		"Run a command in a node's network namespace (node1, node2, ...)",
		func(st lab.Status, node string) (string, error) {
			n, ok := st.Node(node)
			if !ok {
				return "", fmt.Errorf("no node %q in lab %s", node, st.Name)
			}
			return n.NetNSPath, nil
		})
}

func newLabExtExecCmd(name *string) *cobra.Command {
	return newLabInNSCmd(name, "ext-exec -- CMD...", "", "Run a command on the external host (203.0.113.10)",
		func(st lab.Status, _ string) (string, error) {
			if len(st.External) == 0 {
				return "", errors.New("lab has no external host")
			}
			return st.External[0].NetNSPath, nil
		})
}

func newLabTrafficCmd(name *string) *cobra.Command {
	var opt lab.TrafficOptions
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "Drive the app's call graph and print connections made per edge (JSON)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := lab.ReadState(lab.StateDir(*name))
			if err != nil {
				return err
			}
			apps, err := app.Parse(st.App)
			if err != nil {
				return err
			}
			var withGraph []app.App
			for _, a := range apps {
				if len(a.Edges) > 0 {
					withGraph = append(withGraph, a)
				}
			}
			if len(withGraph) == 0 {
				return fmt.Errorf("lab %s runs no app with a call graph (%q); probe it with `palisade lab reach`", *name, st.App)
			}
			enc := json.NewEncoder(c.OutOrStdout())
			enc.SetIndent("", "  ")
			for _, a := range withGraph {
				rep, err := lab.Traffic(ctx, st.Status, a, opt)
				if err != nil {
					return err
				}
				if err := enc.Encode(rep); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&opt.Duration, "duration", 10*time.Second, "how long to drive traffic")
	cmd.Flags().Float64Var(&opt.Rate, "rate", 20, "connections per second over all edges")
	return cmd
}

func newLabReachCmd(name *string) *cobra.Command {
	var (
		opt    lab.ReachOptions
		output string
	)
	cmd := &cobra.Command{
		Use:   "reach",
		Short: "Probe every source → destination × port × protocol and print the reachability matrix",
		Long: `reach tries every (source, destination, port, protocol) in parallel from
inside the sources' network namespaces — over TCP an HTTP request, over UDP a
datagram — and prints the matrix the way Kubernetes' NetworkPolicy tests do:
one table per protocol and port, rows sources, columns destinations, "."
reachable and "X" blocked (refused, unreachable, or no answer within
--timeout). -o json prints the probes as a list of
{"from","to","port","protocol","reachable"} (plus "error" when blocked).

Peers: NAMESPACE/POD (a pod, or a Deployment's first pod: x/a), "external"
(the external host 203.0.113.10) or a node (node1, ...; sources only).
Default sources and destinations: the NetworkPolicy test model's pods (lab
up --app netpol), else every pod.`,
		Example: `  palisade lab reach
  palisade lab reach --from x/a,external,node1 --to y/b,z/c --ports 80 --protocols tcp
  palisade lab reach -o json`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: want table or json", output)
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			st, err := lab.ReadState(lab.StateDir(*name))
			if err != nil {
				return err
			}
			start := time.Now()
			probes, err := lab.Reach(ctx, st.Status, opt)
			if err != nil {
				return err
			}
			took := time.Since(start)
			out := c.OutOrStdout()
			if output == "json" {
				if err := writeProbesJSON(out, probes); err != nil {
					return err
				}
			} else {
				fmt.Fprint(out, lab.FormatTable(probes))
			}
			ok := 0
			for _, p := range probes {
				if p.Reachable {
					ok++
				}
			}
			fmt.Fprintf(c.ErrOrStderr(), "%d probes in %s: %d reachable, %d blocked\n", len(probes), took.Round(time.Millisecond), ok, len(probes)-ok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&opt.From, "from", nil, "sources: NAMESPACE/POD, external, node1, ... (default: the netpol model's pods, else all pods)")
	f.StringSliceVar(&opt.To, "to", nil, "destinations: NAMESPACE/POD or external (default: as --from's default)")
	f.Int32SliceVar(&opt.Ports, "ports", []int32{80, 81}, "ports")
	f.StringSliceVar(&opt.Protocols, "protocols", []string{"tcp", "udp"}, "protocols: tcp, udp")
	f.DurationVar(&opt.Timeout, "timeout", time.Second, "per probe: no answer by then is blocked")
	f.StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

// writeProbesJSON writes probes as a JSON list, one probe per line.
func writeProbesJSON(w io.Writer, probes []lab.Probe) error {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range probes {
		line, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  ")
		b.Write(line)
	}
	b.WriteString("\n]\n")
	_, err := io.WriteString(w, b.String())
	return err
}
