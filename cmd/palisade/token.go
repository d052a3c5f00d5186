package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/pkg/api"
)

// newTokenCmd manages API tokens (admin).
func newTokenCmd() *cobra.Command {
	var af apiFlags
	var output string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (admin): create, list, revoke",
		Long: `API tokens authenticate every call to the server. Each has a name and a role:
admin, owner (operator's rights and edit policies and child scopes), operator
(read, analyze, enforce, discover), viewer (read) or metrics-reader.
An owner, operator or viewer token may be bound to a scope with --scope: its
role then holds on that scope and its descendants only, and every read shows
only what belongs to them (a flow when either end does). Without --scope the
role holds everywhere.
The server's first start writes an admin token to <data>/admin-token.
A token is shown once, when created; the server keeps only its hash.`,
	}
	af.register(cmd)
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	var role, scope, name string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a token; its secret is printed once, as the last line",
		Example: `  palisade token create ci-reader --role viewer --token-file /var/lib/palisade/server/admin-token
  palisade token create --name app-team --role owner --scope cluster-lab:sock-shop`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && name != "" && name != args[0]:
				return fmt.Errorf("token name given twice: %q and --name %q", args[0], name)
			case len(args) == 1:
				name = args[0]
			case name == "":
				return fmt.Errorf("name the token: palisade token create NAME (or --name NAME)")
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			t, err := c.CreateTokenFor(cmd.Context(), api.TokenRequest{Name: name, Role: role, Scope: scope})
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), t)
			}
			on := ""
			if t.Scope != "" {
				on = " on scope " + t.Scope
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %q (role %s%s, id %s); store it now, it is not shown again:\n", t.Name, t.Role, on, t.ID)
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "viewer", "admin, owner, operator, viewer or metrics-reader")
	create.Flags().StringVar(&scope, "scope", "", "bind an owner, operator or viewer token to this scope and its descendants (a name or a path PARENT:CHILD)")
	create.Flags().StringVar(&name, "name", "", "the token's name (instead of the NAME argument)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), ts)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tSCOPE\tCREATED\tCREATED BY\tREVOKED")
			for _, t := range ts {
				rev := "-"
				if t.Revoked != nil {
					rev = t.Revoked.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, dash(t.Scope), t.Created.Local().Format(time.DateTime), dash(t.CreatedBy), rev)
			}
			return tw.Flush()
		},
	}

	revoke := &cobra.Command{
		Use:   "revoke NAME|ID",
		Short: "Revoke a token: every call with it is refused from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			t, err := c.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %q (id %s)\n", t.Name, t.ID)
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
