package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/ruleset"
	"github.com/palisade-dev/palisade/pkg/client"
)

// newEnforceCmd switches scopes between analyze and enforce and shows
// what the agents programmed.
func newEnforceCmd() *cobra.Command {
	var af apiFlags
	var scope, version string
	var failOpen bool
	cmd := &cobra.Command{
		Use:   "enforce --scope S [--version V] [--fail-open]",
		Short: "Enforce a scope's policy version on every node (or: enforce disable|status)",
		Long: `Compile the scope's policy version (default: its newest analyzed version) into
iptables and ipset rules in every node's and pod's network namespace, and keep
them there. Agents keep the rules while they cannot reach the server (fail
closed) unless --fail-open. 'palisade enforce disable --scope S' puts the
scope back in analyze mode and removes its rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return errors.New("--scope is required")
			}
			return setMode(cmd, &af, scope, ruleset.ModeRequest{Mode: ruleset.Enforce, Version: version, FailOpen: failOpen})
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&scope, "scope", "", "scope to enforce")
	cmd.Flags().StringVar(&version, "version", "", "version to enforce (default: the newest analyzed)")
	cmd.Flags().BoolVar(&failOpen, "fail-open", false, "agents that lose the server for 60 s remove the rules (default: keep them)")

	var dscope string
	disable := &cobra.Command{
		Use:   "disable --scope S",
		Short: "Put a scope back in analyze mode: its rules are removed from every namespace",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dscope == "" {
				return errors.New("--scope is required")
			}
			return setMode(cmd, &af, dscope, ruleset.ModeRequest{Mode: ruleset.Analyze})
		},
	}
	disable.Flags().StringVar(&dscope, "scope", "", "scope to stop enforcing")

	var output string
	status := &cobra.Command{
		Use:   "status [-o json]",
		Short: "Show each scope's mode and what every agent programmed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var st ruleset.Enforcement
			if err := c.Do(cmd.Context(), client.Request{Method: "GET", Path: "/api/v1/enforcement"}, &st); err != nil {
				return err
			}
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			case "", "table":
			default:
				return fmt.Errorf("-o %q: want table or json", output)
			}
			return printEnforcement(cmd, &st)
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(disable, status)
	return cmd
}

func setMode(cmd *cobra.Command, af *apiFlags, scope string, req ruleset.ModeRequest) error {
	c, err := af.client()
	if err != nil {
		return err
	}
	var m ruleset.ScopeMode
	if err := c.Do(cmd.Context(), client.Request{Method: "POST", Path: "/api/v1/enforcement/scopes/" + url.PathEscape(scope), JSON: req}, &m); err != nil {
		return err
	}
	if m.Mode == ruleset.Enforce {
		fmt.Fprintf(cmd.OutOrStdout(), "scope %s: enforcing %s", m.Scope, m.Version)
		if m.FailOpen {
			fmt.Fprint(cmd.OutOrStdout(), " (fail-open)")
		}
		fmt.Fprintln(cmd.OutOrStdout())
		return nil
	}
	fmt.Fprintf(cmd.OutOrStdout(), "scope %s: analyze (rules removed)\n", m.Scope)
	return nil
}

func printEnforcement(cmd *cobra.Command, st *ruleset.Enforcement) error {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SCOPE\tMODE\tVERSION\tFAIL-OPEN\tSINCE")
	for _, s := range st.Scopes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%t\t%s\n", s.Scope, s.Mode, s.Version, s.FailOpen, s.Updated.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NODE\tIN SYNC\tPROGRAMMED\tWANTED\tNAMESPACES\tRULES\tSET MEMBERS\tPENDING\tDRIFT\tERRORS")
	for _, a := range st.Agents {
		rules, members, pending := 0, 0, 0
		for _, n := range a.Namespaces {
			rules += n.Rules
			members += n.Members
			if n.Pending {
				pending++
			}
		}
		fmt.Fprintf(w, "%s\t%t\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", a.Node, a.InSync, a.Hash, a.Wanted, len(a.Namespaces), rules, members, pending, len(a.Drift), len(a.Errors))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if st.Error != "" {
		fmt.Fprintf(cmd.OutOrStdout(), "\nlast compilation failed: %s\n", st.Error)
	}
	for _, a := range st.Agents {
		for _, d := range a.Drift {
			fmt.Fprintf(cmd.OutOrStdout(), "drift %s %s %s: %s\n", d.Time.Format(time.RFC3339), a.Node, d.Target, d.What)
		}
		for _, e := range a.Errors {
			fmt.Fprintf(cmd.OutOrStdout(), "error %s: %s\n", a.Node, e)
		}
	}
	return nil
}
