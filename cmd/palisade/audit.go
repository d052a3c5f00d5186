package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/pkg/client"
)

// newAuditCmd shows the audit log of changes (admin).
func newAuditCmd() *cobra.Command {
	var af apiFlags
	var q client.AuditQuery
	var output string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed what and when (admin): every write through the API",
		Example: `  palisade audit --since 1h
  palisade audit --who alice --path /api/v1/filters -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			recs, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tWHO\tACTION\tPATH\tSTATUS")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", r.Time.Local().Format(time.DateTime), r.Who, r.Action, r.Path, r.Status)
			}
			return tw.Flush()
		},
	}
	af.register(cmd)
	f := cmd.Flags()
	f.StringVar(&q.Since, "since", "", "only changes since: a duration before now (24h), RFC 3339 or unix seconds")
	f.StringVar(&q.Who, "who", "", "only changes by this principal (a token's name, agent:NODE)")
	f.StringVar(&q.Path, "path", "", "only changes under this API path, e.g. /api/v1/filters")
	f.IntVar(&q.Limit, "limit", 100, "the newest N changes")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json (json has the state before and after)")
	return cmd
}
