package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

func newInventoryCmd() *cobra.Command {
	var af apiFlags
	var output string
	inv := &cobra.Command{
		Use:     "inventory",
		Aliases: []string{"inv"},
		Short:   "Search the live Kubernetes inventory",
	}
	af.register(inv)
	inv.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	var includeDeleted bool
	search := &cobra.Command{
		Use:   "search [FILTER]",
		Short: "List workloads matching a filter, e.g. 'namespace = sock-shop and label.app = carts'",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var src string
			if len(args) == 1 {
				src = args[0]
			}
			res, err := c.SearchInventory(cmd.Context(), src, client.SearchOptions{IncludeDeleted: includeDeleted})
			if err != nil {
				return filterErr(err, args)
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res.Items)
			}
			return printWorkloads(cmd.OutOrStdout(), res.Items)
		},
	}
	search.Flags().BoolVar(&includeDeleted, "include-deleted", false, "include deleted workloads")

	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show a workload's profile and history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			res, err := c.Workload(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}

	var at string
	lookup := &cobra.Command{
		Use:   "lookup IP",
		Short: "Which workload held an IP (now, or at --at RFC3339)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			w, err := c.Lookup(cmd.Context(), args[0], at)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), w)
			}
			return printWorkloads(cmd.OutOrStdout(), []*inventory.Workload{&w})
		},
	}
	lookup.Flags().StringVar(&at, "at", "", "time (RFC 3339) at which to attribute the IP")

	filters := &cobra.Command{Use: "filters", Short: "Named, saved inventory filters"}
	filters.AddCommand(
		&cobra.Command{
			Use: "list", Short: "List saved filters", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := af.client()
				if err != nil {
					return err
				}
				res, err := c.Filters(cmd.Context())
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), res)
			},
		},
		saveFilterCmd(&af),
		&cobra.Command{
			Use: "delete NAME", Short: "Delete a saved filter", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := af.client()
				if err != nil {
					return err
				}
				return c.DeleteFilter(cmd.Context(), args[0])
			},
		},
	)
	inv.AddCommand(search, get, lookup, filters)
	return inv
}

// filterErr points at the offending column of a rejected filter.
func filterErr(err error, args []string) error {
	e, ok := client.AsError(err)
	if !ok || e.Position <= 0 || len(args) == 0 {
		return err
	}
	return fmt.Errorf("%s\n  %s\n  %s^", e.Message, args[0], strings.Repeat(" ", e.Position-1))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printWorkloads(w io.Writer, ws []*inventory.Workload) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAMESPACE\tNAME\tIPS\tNODE\tOWNER\tLABELS")
	for _, x := range ws {
		owner := ""
		if x.Owner != nil {
			owner = x.Owner.Kind + "/" + x.Owner.Name
		}
		var labels []string
		for k, v := range x.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Kind, dash(x.Namespace), x.Name, dash(strings.Join(append(append([]string{}, x.IPs...), x.CIDRs...), ",")),
			dash(x.Node), dash(owner), dash(strings.Join(labels, ",")))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// saveFilterCmd is `inventory filters save NAME FILTER [--scope S]`.
func saveFilterCmd(af *apiFlags) *cobra.Command {
	var scope string
	cmd := &cobra.Command{
		Use: "save NAME FILTER", Short: "Save a filter under a name", Args: cobra.ExactArgs(2),
		Long: `Save a filter under a name. It belongs to --scope, by default the token's own scope
(global for a token bound to no scope: only such tokens see and change global filters).
A token bound to a scope needs the owner role there (docs/SECURITY.md, "Saved filters").`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			res, err := c.SaveFilter(cmd.Context(), api.SavedFilter{Name: args[0], Filter: args[1], Scope: scope})
			if err != nil {
				return filterErr(err, args[1:])
			}
			return printJSON(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().StringVar(&scope, "scope", "", "the scope that owns the filter (default: the token's scope)")
	return cmd
}
