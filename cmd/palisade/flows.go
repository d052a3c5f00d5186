package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/client"
)

func newFlowsCmd() *cobra.Command {
	var af apiFlags
	var output string
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Search the flows agents reported",
	}
	af.register(cmd)
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")

	var since, until string
	var limit int
	search := &cobra.Command{
		Use:   "search [FILTER]",
		Short: "List flows matching a filter, newest first",
		Example: `  palisade flows search 'src.namespace = "shop" and dst.port = 5432' --since 5m
  palisade flows search 'related contains "clusterip-dnat"' -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			q := client.FlowQuery{From: since, To: until, Limit: limit}
			if len(args) == 1 {
				q.Filter = args[0]
			}
			res, err := c.SearchFlows(cmd.Context(), q)
			if err != nil {
				return filterErr(err, args)
			}
			return flowsPrint(cmd.OutOrStdout(), output, res.Flows, res)
		},
	}
	search.Flags().StringVar(&since, "since", "15m", "start of the time range: a duration before now, RFC 3339 or unix seconds")
	search.Flags().StringVar(&until, "until", "", "end of the time range (default now)")
	search.Flags().IntVar(&limit, "limit", 100, "at most this many flows")

	get := &cobra.Command{
		Use:   "get ID",
		Short: "Show a flow with its observation points and related flows",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			d, err := c.Flow(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), d)
			}
			w := cmd.OutOrStdout()
			flowsPrint(w, "table", []flow.Flow{d.Flow}, nil)
			fmt.Fprintln(w, "\nOBSERVED AT")
			for _, p := range d.Points {
				fmt.Fprintf(w, "  %s/%s (%s) %s\n", p.Node, p.Interface, p.Kind, p.Pod)
			}
			if len(d.Related) > 0 {
				fmt.Fprintln(w, "\nRELATED")
				for _, r := range d.Related {
					fmt.Fprintf(w, "  %s  %s\n", r.ID, r.Reason)
				}
				fmt.Fprintln(w)
				flowsPrint(w, "table", d.RelatedFlows, nil)
			}
			return nil
		},
	}

	var by, filterSrc string
	var n int
	top := &cobra.Command{
		Use:     "top",
		Short:   "Count flows grouped by a field",
		Example: "  palisade flows top --by dst.port --since 1h\n  palisade flows top --by pair --filter 'src.namespace = shop'",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			res, err := c.TopFlows(cmd.Context(), client.FlowQuery{Filter: filterSrc, From: since, To: until}, by, n)
			if err != nil {
				return filterErr(err, []string{filterSrc})
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "%s\tFLOWS\tCONNS\tBYTES\n", strings.ToUpper(by))
			for _, e := range res.Entries {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", dash(e.Key), e.Flows, e.Conns, e.Bytes)
			}
			return tw.Flush()
		},
	}
	top.Flags().StringVar(&by, "by", "dst.port", `group by: "pair" or an endpoint field (src.namespace, dst.port, dst.service, proto, ...)`)
	top.Flags().StringVar(&filterSrc, "filter", "", "only flows matching this filter")
	top.Flags().IntVar(&n, "n", 10, "number of groups")
	top.Flags().StringVar(&since, "since", "1h", "start of the time range")
	top.Flags().StringVar(&until, "until", "", "end of the time range (default now)")

	cmd.AddCommand(search, get, top, newFlowsFollowCmd(&af, &output))
	return cmd
}

func flowsPrint(w io.Writer, output string, flows []flow.Flow, raw any) error {
	switch output {
	case "json":
		if raw == nil {
			raw = flows
		}
		return printJSON(w, raw)
	case "table", "":
	default:
		return fmt.Errorf("output %q: want table or json", output)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tPROTO\tSOURCE\tDESTINATION\tPKTS→/←\tBYTES→/←\tFLAGS\tREPLIED\tPOINTS\tRELATED\tID")
	for _, f := range flows {
		var rel []string
		for _, r := range f.Related {
			rel = append(rel, r.Reason)
		}
		proto, src, dst := f.Proto, f.Src, f.Dst
		if flow.IsICMP(f.Proto) {
			// No ports: the type and code stand in the destination port.
			proto = flow.ICMPName(f.Proto, f.Dst.Port)
			src.Port, dst.Port = 0, 0
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%v\t%d\t%s\t%s\n",
			f.Start.Local().Format(time.DateTime), proto, flowsEndpoint(src), flowsEndpoint(dst),
			f.FwdPackets, f.RevPackets, f.FwdBytes, f.RevBytes, dash(strings.Join(f.Flags, ",")), f.Replied,
			len(f.Points), dash(strings.Join(rel, ",")), f.ID)
	}
	return tw.Flush()
}

func flowsEndpoint(e flow.Endpoint) string {
	s := e.IP
	if e.Port != 0 {
		s += fmt.Sprintf(":%d", e.Port)
	}
	if e.Name != "" {
		name := e.Name
		if e.Namespace != "" {
			name = e.Namespace + "/" + name
		}
		s += " (" + name + ")"
	}
	return s
}
