package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newAgentTokenCmd is `palisade agent token create --node NODE`: a
// one-time enrollment token, printed as the last line.
func newAgentTokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Enrollment tokens for node agents (admin)"}
	var af apiFlags
	var node, ttl string
	create := &cobra.Command{
		Use:   "create --node NODE [--ttl 24h]",
		Short: "Create a one-time enrollment token for a node's agent (printed once, as the last line)",
		Long: `Create a one-time enrollment token for the agent of NODE. The agent uses it once:

  palisade agent --server URL --ca ca.crt --node NODE --enroll-token TOKEN [--state-dir DIR]

sends a certificate request with it, and the server's CA signs a client
certificate naming NODE, which the agent keeps in its state directory, reuses
after restarts and renews before it expires. The token expires after --ttl
(default: the server's --enroll-token-ttl, 24 h) and cannot be used twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if node == "" {
				return fmt.Errorf("--node is required")
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			t, err := c.CreateAgentToken(ctx, node, ttl)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "enrollment token %s for node %s, valid once until %s (shown only now):\n", t.ID, t.Node, t.Expires.Format(time.RFC3339))
			fmt.Fprintln(out, t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&node, "node", "", "the node whose agent will enroll")
	create.Flags().StringVar(&ttl, "ttl", "", "how long the token may be used, e.g. 1h (default: the server's, 24h)")
	af.register(create)
	var lf apiFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List enrollment tokens (node, expiry, when used) and enrolled nodes (live certificates, revocation)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lf.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			toks, err := c.AgentTokens(ctx)
			if err != nil {
				return err
			}
			ids, err := c.AgentIdentities(ctx)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOKEN\tNODE\tEXPIRES\tUSED")
			for _, t := range toks {
				used := "-"
				if t.Used != nil {
					used = t.Used.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.ID, t.Node, t.Expires.Format(time.RFC3339), used)
			}
			fmt.Fprintln(w, "\nNODE\tLIVE CERTIFICATES\tUNTIL\tREVOKED")
			for _, id := range ids {
				until, revoked := "-", "-"
				if id.NotAfter != nil {
					until = id.NotAfter.Format(time.RFC3339)
				}
				if id.Revoked != nil {
					revoked = id.Revoked.Format(time.RFC3339) + " by " + id.RevokedBy
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", id.Node, id.Live, until, revoked)
			}
			return w.Flush()
		},
	}
	lf.register(list)
	cmd.AddCommand(create, list)
	return cmd
}

// newAgentRevokeCmd is `palisade agent revoke NODE`.
func newAgentRevokeCmd() *cobra.Command {
	var af apiFlags
	cmd := &cobra.Command{
		Use:   "revoke NODE",
		Short: "Refuse every certificate of a node's agent from now on (admin); a new enrollment token enrolls it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			id, err := c.RevokeAgent(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s revoked at %s: its agent's certificates are refused\n", id.Node, id.Revoked.Format(time.RFC3339))
			return nil
		},
	}
	af.register(cmd)
	return cmd
}
