package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// newTokenCmd manages API tokens (admin).
func newTokenCmd() *cobra.Command {
	var af apiFlags
	var output string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage API tokens (admin): create, list, revoke",
		Long: `API tokens authenticate every call to the server. Each has a name and a role:
admin, owner, operator (read and change), viewer (read) or metrics-reader.
The server's first start writes an admin token to <data>/admin-token.
A token is shown once, when created; the server keeps only its hash.`,
	}
	af.register(cmd)
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	var role string
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a token; its secret is printed once, as the last line",
		Example: "  palisade token create ci-reader --role viewer --token-file /var/lib/palisade/server/admin-token",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), args[0], role)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %q (role %s, id %s); store it now, it is not shown again:\n", t.Name, t.Role, t.ID)
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "viewer", "admin, owner, operator, viewer or metrics-reader")

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
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tCREATED BY\tREVOKED")
			for _, t := range ts {
				rev := "-"
				if t.Revoked != nil {
					rev = t.Revoked.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.Created.Local().Format(time.DateTime), dash(t.CreatedBy), rev)
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
