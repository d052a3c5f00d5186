package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/flow"
)

// flowsClient calls the server's flow API.
type flowsClient struct {
	server string
	token  string
}

func (c *flowsClient) get(path string, q url.Values, out any) error {
	u := strings.TrimSuffix(c.server, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("flows: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("flows: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error    string `json:"error"`
			Position int    `json:"position"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			if e.Position > 0 {
				return fmt.Errorf("filter, column %d: %s", e.Position, e.Error)
			}
			return fmt.Errorf("server: %s", e.Error)
		}
		return fmt.Errorf("server: %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

func newFlowsCmd() *cobra.Command {
	c := &flowsClient{}
	var output string
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Search the flows agents reported",
	}
	cmd.PersistentFlags().StringVar(&c.server, "server", flowsEnvOr("PALISADE_SERVER", "http://127.0.0.1:8443"), "server URL (env PALISADE_SERVER)")
	cmd.PersistentFlags().StringVar(&c.token, "token", os.Getenv("PALISADE_TOKEN"), "API token (env PALISADE_TOKEN)")
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
			q := url.Values{"from": {since}, "limit": {fmt.Sprint(limit)}}
			if until != "" {
				q.Set("to", until)
			}
			if len(args) == 1 {
				q.Set("filter", args[0])
			}
			var res struct {
				Flows []flow.Flow `json:"flows"`
			}
			if err := c.get("/api/v1/flows", q, &res); err != nil {
				return err
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
			var d flow.Detail
			if err := c.get("/api/v1/flows/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			if output == "json" {
				return flowsWriteJSON(cmd.OutOrStdout(), d)
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
			q := url.Values{"by": {by}, "from": {since}, "n": {fmt.Sprint(n)}, "filter": {filterSrc}}
			if until != "" {
				q.Set("to", until)
			}
			var res struct {
				By      string          `json:"by"`
				Entries []flow.TopEntry `json:"entries"`
			}
			if err := c.get("/api/v1/flows/top", q, &res); err != nil {
				return err
			}
			if output == "json" {
				return flowsWriteJSON(cmd.OutOrStdout(), res)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "%s\tFLOWS\tCONNS\tBYTES\n", strings.ToUpper(by))
			for _, e := range res.Entries {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", flowsOrDash(e.Key), e.Flows, e.Conns, e.Bytes)
			}
			return tw.Flush()
		},
	}
	top.Flags().StringVar(&by, "by", "dst.port", `group by: "pair" or an endpoint field (src.namespace, dst.port, dst.service, proto, ...)`)
	top.Flags().StringVar(&filterSrc, "filter", "", "only flows matching this filter")
	top.Flags().IntVar(&n, "n", 10, "number of groups")
	top.Flags().StringVar(&since, "since", "1h", "start of the time range")
	top.Flags().StringVar(&until, "until", "", "end of the time range (default now)")

	cmd.AddCommand(search, get, top)
	return cmd
}

func flowsPrint(w io.Writer, output string, flows []flow.Flow, raw any) error {
	switch output {
	case "json":
		if raw == nil {
			raw = flows
		}
		return flowsWriteJSON(w, raw)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%v\t%d\t%s\t%s\n",
			f.Start.Local().Format(time.DateTime), f.Proto, flowsEndpoint(f.Src), flowsEndpoint(f.Dst),
			f.FwdPackets, f.RevPackets, f.FwdBytes, f.RevBytes, flowsOrDash(strings.Join(f.Flags, ",")), f.Replied,
			len(f.Points), flowsOrDash(strings.Join(rel, ",")), f.ID)
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

func flowsOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func flowsWriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func flowsEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
