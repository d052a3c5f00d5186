package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
		Short: "A multi-node Kubernetes network in Linux network namespaces, running sock-shop (root)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if os.Geteuid() != 0 {
				return errors.New("palisade lab needs root: it creates network namespaces, veths and iptables rules (try sudo)")
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&name, "name", "lab", "lab name (lower-case letters and digits)")
	cmd.AddCommand(newLabUpCmd(&name), newLabDownCmd(&name), newLabStatusCmd(&name),
		newLabExecCmd(&name), newLabNodeExecCmd(&name), newLabExtExecCmd(&name), newLabTrafficCmd(&name))
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
	f.StringVar(&cfg.App, "app", "sockshop", `application to deploy ("" for none)`)
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
			fmt.Fprintf(w, "\nPOD\tAPP\tNODE\tIP\n")
			for _, p := range st.Status.Pods {
				fmt.Fprintf(w, "%s/%s\t%s\t%s\t%s\n", p.Namespace, p.Name, p.App, p.Node, p.IP)
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
			a, err := app.ByName(st.App)
			if err != nil {
				return err
			}
			rep, err := lab.Traffic(ctx, st.Status, a, opt)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(c.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		},
	}
	cmd.Flags().DurationVar(&opt.Duration, "duration", 10*time.Second, "how long to drive traffic")
	cmd.Flags().Float64Var(&opt.Rate, "rate", 20, "connections per second over all edges")
	return cmd
}
