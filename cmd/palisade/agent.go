package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/client"
)

// newAgentCmd is the node agent and its remote control.
func newAgentCmd() *cobra.Command {
	var cfg agent.Config
	var uplinks string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: observe flows at pod and node interfaces and report them",
		Long: `Run the node agent for one node: an eBPF tc classifier counts flows on every
pod veth and node interface of the node's network namespace, conntrack supplies
NAT mappings, and observations are reported to the server in conversation mode
(15 s summaries) or detailed mode (per 5-tuple, every second). Batches are
spooled to disk until the server acknowledges them.

Mode precedence: the server's mode for the node wins. --mode is the mode the
agent starts in and keeps until the server answers (and while the server
cannot be reached); once the server answers, its mode applies, and if it
differs from --mode the agent logs so. Change a node's mode on the server
with ` + "`palisade agent mode NODE detailed|conversation`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfg.Node == "" {
				return errors.New("--node is required")
			}
			if uplinks != "" {
				cfg.Uplinks = strings.Split(uplinks, ",")
			}
			if !cmd.Flags().Changed("mode") {
				cfg.Mode = "" // the default: no --mode to report as replaced
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return agent.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", client.ServerURL(""), "server URL (env PALISADE_SERVER)")
	f.StringVar(&cfg.Node, "node", "", "node name")
	f.StringVar(&cfg.NetNS, "netns", "", "the node's network namespace: an `ip netns` name (node1) or a path (/run/netns/node1, /proc/PID/ns/net); default: the agent's own")
	f.StringVar(&cfg.Mode, "mode", flow.ConversationMode, "mode until the server answers: conversation or detailed (the server's mode for the node then wins)")
	f.StringVar(&cfg.EnrollToken, "enroll-token", os.Getenv("PALISADE_ENROLL_TOKEN"), "one-time enrollment token (palisade agent token create --node NODE): enrolls on first start; the client certificate is kept in --state-dir and reused (env PALISADE_ENROLL_TOKEN)")
	f.StringVar(&cfg.StateDir, "state-dir", "", "directory keeping the agent's client certificate and key (default /var/lib/palisade/agent/NODE)")
	f.StringVar(&cfg.Token, "token", os.Getenv("PALISADE_AGENT_TOKEN"), "legacy shared agent token of a plain-HTTP server (--insecure-listen; env PALISADE_AGENT_TOKEN); a TLS server takes enrolled agents only")
	f.StringVar(&cfg.CAFile, "ca", os.Getenv("PALISADE_CA"), "the server's CA certificate, <data>/ca.crt (env PALISADE_CA)")
	f.StringVar(&cfg.SpoolDir, "spool", "", "spool directory for unsent batches (default /var/lib/palisade/agent/NODE)")
	f.StringVar(&cfg.BPFFS, "bpffs", "", `bpffs directory to pin flow maps in (default /run/palisade/bpffs; "-" to not pin)`)
	f.StringVar(&uplinks, "uplinks", "", "comma-separated node interfaces; every other veth is then a pod interface")
	f.BoolVar(&cfg.DetachOnExit, "detach-on-exit", false, "remove the classifier and pinned maps on exit (default: keep counting for the next agent)")
	f.DurationVar(&cfg.ConversationInterval, "conversation-interval", 15*time.Second, "conversation mode summary window")
	f.DurationVar(&cfg.DetailedInterval, "detailed-interval", time.Second, "detailed mode record interval")
	f.BoolVar(&cfg.Enforce, "enforce", false, "program the server's enforcement rules in the node's and its pods' namespaces")
	f.StringVar(&cfg.PodNetNSPrefix, "pod-netns-prefix", "", "with --enforce: pod namespaces are the /run/netns entries starting with this")
	cmd.AddCommand(newAgentModeCmd(), newAgentTokenCmd(), newAgentRevokeCmd())
	return cmd
}

func newAgentModeCmd() *cobra.Command {
	var af apiFlags
	cmd := &cobra.Command{
		Use:   "mode NODE detailed|conversation",
		Short: "Switch a node's agent between conversation and detailed mode",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			node, mode := args[0], args[1]
			if mode != flow.ConversationMode && mode != flow.DetailedMode {
				return fmt.Errorf("mode %q: want %s or %s", mode, flow.DetailedMode, flow.ConversationMode)
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			if _, err := c.SetAgentConfig(ctx, node, flow.AgentConfig{Mode: mode}); err != nil {
				return err
			}
			got, err := c.AgentConfig(ctx, node)
			if err != nil {
				return err
			}
			b, _ := json.Marshal(got)
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", node, b)
			return nil
		},
	}
	af.register(cmd)
	return cmd
}
