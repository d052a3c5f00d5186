package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/analyze"
	"github.com/palisade-dev/palisade/internal/policy/compliance"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// policyCommands are the policy-as-code, analysis and compliance commands.
func policyCommands() []*cobra.Command {
	return []*cobra.Command{newApplyCmd(), newGetCmd(), newDeleteCmd(), newAnalyzeCmd(), newComplianceCmd()}
}

func apiURL(serverURL, path string, q url.Values) string {
	u := client.ServerURL(serverURL) + "/api/v1" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

func serverFlag(cmd *cobra.Command, v *string) {
	cmd.PersistentFlags().StringVar(v, "server", "", "Palisade server URL (default $PALISADE_SERVER or "+client.DefaultServer+")")
	cliAPI.registerCredentials(cmd)
}

// readPolicyFiles reads -f FILE|DIR|-: a directory gives its *.yaml and
// *.yml files (recursively, in name order).
func readPolicyFiles(paths []string, stdin io.Reader) ([]server.ApplyFile, error) {
	if len(paths) == 0 {
		return nil, errors.New("give the documents with -f FILE, -f DIR or -f -")
	}
	var out []server.ApplyFile
	for _, p := range paths {
		if p == "-" {
			b, err := io.ReadAll(io.LimitReader(stdin, policy.MaxDocumentBytes+1))
			if err != nil {
				return nil, err
			}
			out = append(out, server.ApplyFile{Name: "-", Content: string(b)})
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		var files []string
		if st.IsDir() {
			err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
					files = append(files, path)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			sort.Strings(files)
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: no .yaml or .yml files", p)
			}
		} else {
			files = []string{p}
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			out = append(out, server.ApplyFile{Name: f, Content: string(b)})
		}
	}
	return out, nil
}

func runApply(cmd *cobra.Command, serverURL string, files []string, dryRun, del bool) error {
	in, err := readPolicyFiles(files, cmd.InOrStdin())
	if err != nil {
		return err
	}
	path := "/policy/apply"
	if del {
		path = "/policy/delete"
	}
	var res policy.Result
	if err := apiDo("POST", apiURL(serverURL, path, nil), server.ApplyRequest{Files: in, DryRun: dryRun}, &res); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == 422 {
			return errors.New("nothing applied:\n" + ae.Message)
		}
		return err
	}
	printChanges(cmd.OutOrStdout(), &res)
	return nil
}

func printChanges(w io.Writer, res *policy.Result) {
	suffix := ""
	if res.DryRun {
		suffix = " (dry run)"
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(w, "no change"+suffix)
		return
	}
	for _, c := range res.Changes {
		fmt.Fprintf(w, "%s/%s %s%s\n", c.Kind, c.Name, c.Op, suffix)
		for _, d := range c.Diff {
			fmt.Fprintln(w, "  "+d)
		}
	}
}

func newApplyCmd() *cobra.Command {
	var serverURL string
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update scopes, policies, policy versions and inventory filters from YAML",
		Long: `Apply YAML documents (kind: Scope | Policy | InventoryFilter | PolicyVersion), several per
file separated by ---. Everything applies or nothing does; errors name file:line:column and
the field. Applying the same documents again changes nothing. Prints the changes it made.`,
		Example: `  palisade apply -f sock-shop.yaml
  palisade apply -f policies/ --dry-run
  palisade get policies -o yaml | palisade apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runApply(cmd, serverURL, files, dryRun, false) },
	}
	serverFlag(cmd, &serverURL)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "a YAML file, a directory of them, or - for stdin (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and print the changes without making them")
	return cmd
}

func newDeleteCmd() *cobra.Command {
	var serverURL string
	var files []string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "delete -f FILE|DIR|-",
		Short: "Delete the scopes, policies, draft versions and inventory filters a YAML file declares",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runApply(cmd, serverURL, files, dryRun, true) },
	}
	serverFlag(cmd, &serverURL)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "a YAML file, a directory of them, or - for stdin (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate and print the changes without making them")
	return cmd
}

func newGetCmd() *cobra.Command {
	var serverURL, output, scope, version string
	cmd := &cobra.Command{
		Use:       "get scopes|policies|versions",
		Short:     "List scopes, the policies of a scope's version, or versions",
		ValidArgs: []string{"scopes", "policies", "versions"},
		Example: `  palisade get scopes
  palisade get policies --scope sock-shop --version v2 -o yaml
  palisade get versions --scope sock-shop -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "yaml" && output != "json" {
				return fmt.Errorf("-o %s: want yaml, json or table", output)
			}
			var scopes []server.ScopeView
			if err := apiDo("GET", apiURL(serverURL, "/scopes", nil), nil, &scopes); err != nil {
				return err
			}
			if scope != "" {
				var one []server.ScopeView
				for _, s := range scopes {
					if s.Name == scope {
						one = append(one, s)
					}
				}
				if len(one) == 0 {
					return fmt.Errorf("no scope %q", scope)
				}
				scopes = one
			}
			w := cmd.OutOrStdout()
			switch args[0] {
			case "scopes", "scope":
				return printScopes(w, output, scopes)
			case "versions", "version":
				var all []*policy.Version
				for _, s := range scopes {
					var vs []*policy.Version
					if err := apiDo("GET", apiURL(serverURL, "/scopes/"+url.PathEscape(s.Name)+"/versions", nil), nil, &vs); err != nil {
						return err
					}
					for _, v := range vs {
						if version == "" || v.Name == version {
							all = append(all, v)
						}
					}
				}
				return printVersions(w, output, all)
			case "policies", "policy":
				var all []policy.Policy
				for _, s := range scopes {
					q := url.Values{}
					if version != "" {
						q.Set("version", version)
					}
					var ps []policy.Policy
					if err := apiDo("GET", apiURL(serverURL, "/scopes/"+url.PathEscape(s.Name)+"/policies", q), nil, &ps); err != nil {
						return err
					}
					all = append(all, ps...)
				}
				return printPolicies(w, output, all, version)
			}
			return fmt.Errorf("get %s: want scopes, policies or versions", args[0])
		},
	}
	serverFlag(cmd, &serverURL)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: yaml, json or table")
	cmd.Flags().StringVar(&scope, "scope", "", "only this scope")
	cmd.Flags().StringVar(&version, "version", "", "policies/versions: this version (default: the newest)")
	return cmd
}

func printScopes(w io.Writer, output string, scopes []server.ScopeView) error {
	switch output {
	case "json":
		return printJSON(w, scopes)
	case "yaml":
		docs := make([]any, len(scopes))
		for i, s := range scopes {
			docs[i] = policy.ScopeDoc(s.Scope)
		}
		return policy.Marshal(w, docs)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPARENT\tCATCH-ALL\tVERSIONS\tENFORCED\tFILTER")
	for _, s := range scopes {
		ca := s.CatchAll.String()
		if ca == "" {
			ca = "DENY"
		}
		parent := s.Parent
		if parent == "" {
			parent = policy.RootScope
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, parent, ca, len(s.Versions), dash(s.Enforced), s.Filter)
	}
	return tw.Flush()
}

func printVersions(w io.Writer, output string, vs []*policy.Version) error {
	switch output {
	case "json":
		if vs == nil {
			vs = []*policy.Version{}
		}
		return printJSON(w, vs)
	case "yaml":
		docs := make([]any, len(vs))
		for i, v := range vs {
			docs[i] = policy.VersionDoc(v)
		}
		return policy.Marshal(w, docs)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\tVERSION\tSTATE\tPOLICIES\tCREATED\tBY\tUPDATED\tBY")
	for _, v := range vs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", v.Scope, v.Name, v.State, len(v.Policies),
			v.Created.Local().Format(time.DateTime), v.CreatedBy, v.Updated.Local().Format(time.DateTime), v.UpdatedBy)
	}
	return tw.Flush()
}

func printPolicies(w io.Writer, output string, ps []policy.Policy, version string) error {
	switch output {
	case "json":
		if ps == nil {
			ps = []policy.Policy{}
		}
		return printJSON(w, ps)
	case "yaml":
		docs := make([]any, len(ps))
		for i, p := range ps {
			docs[i] = policy.PolicyDoc(p, version)
		}
		return policy.Marshal(w, docs)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCOPE\t#\tCLASS\tPRIO\tACTION\tCONSUMER\tPROVIDER\tPORTS\tDIRECTION")
	n := map[string]int{}
	for _, p := range ps {
		ports := strings.Join(p.Ports, ",")
		if ports == "" {
			ports = "any"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Scope, n[p.Scope], p.Class, p.EffectivePriority(), p.Action,
			p.Consumer, p.Provider, ports, p.Direction)
		n[p.Scope]++
	}
	return tw.Flush()
}

// timeRange turns --since or --from/--to into query parameters.
func timeRange(q url.Values, since, from, to string) error {
	if since != "" && (from != "" || to != "") {
		return errors.New("give either --since or --from/--to, not both")
	}
	if since != "" {
		q.Set("since", since)
		return nil
	}
	if from == "" {
		return errors.New("give the time range: --since DURATION or --from TIME --to TIME")
	}
	for name, v := range map[string]string{"from": from, "to": to} {
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-12-01T15:04:05Z", name, v)
		}
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func newAnalyzeCmd() *cobra.Command {
	var serverURL, scope, version, since, from, to, by, output string
	cmd := &cobra.Command{
		Use:   "analyze --scope S [--version V] (--since D | --from T --to T)",
		Short: "Analyze a policy version against the flows of a time range (Permitted/Escaped/Rejected/Misdropped)",
		Long: `Decide every stored flow of the time range that touches the scope with the scope's version
(default: its newest) and the newest versions of the other scopes, and compare with what the
network did. The analyzed version becomes immutable.`,
		Example: `  palisade analyze --scope sock-shop --since 1h
  palisade analyze --scope sock-shop --version v1 --from 2026-12-01T10:00:00Z --to 2026-12-01T11:00:00Z --by rule
  palisade analyze flows --scope sock-shop --verdict escaped --since 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return errors.New("--scope is required")
			}
			q := url.Values{"scope": {scope}}
			if version != "" {
				q.Set("version", version)
			}
			if err := timeRange(q, since, from, to); err != nil {
				return err
			}
			var rep analyze.Report
			if err := apiDo("GET", apiURL(serverURL, "/analysis", q), nil, &rep); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			return printReport(cmd.OutOrStdout(), &rep, by)
		},
	}
	serverFlag(cmd, &serverURL)
	cmd.PersistentFlags().StringVar(&scope, "scope", "", "the scope to analyze (required)")
	cmd.PersistentFlags().StringVar(&version, "version", "", "the scope's version (default: the newest)")
	cmd.PersistentFlags().StringVar(&since, "since", "", "analyze the flows of this long before now (e.g. 15m, 24h)")
	cmd.PersistentFlags().StringVar(&from, "from", "", "start of the time range (RFC 3339)")
	cmd.PersistentFlags().StringVar(&to, "to", "", "end of the time range (RFC 3339; default now)")
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&by, "by", "verdict", "table rows: verdict, rule or minute")

	var verdict, rule, inScope string
	var limit int
	flows := &cobra.Command{
		Use:   "flows --scope S --verdict V",
		Short: "List the analyzed flows of one cell (verdict, rule) with the rule that decided each",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return errors.New("--scope is required")
			}
			q := url.Values{"scope": {scope}, "limit": {fmt.Sprint(limit)}}
			if version != "" {
				q.Set("version", version)
			}
			if verdict != "" {
				if _, err := policy.ParseVerdict(verdict); err != nil {
					return err
				}
				q.Set("verdict", verdict)
			}
			if rule != "" {
				q.Set("rule", rule)
			}
			if inScope != "" {
				q.Set("in_scope", inScope)
			}
			if since == "" && from == "" {
				since = "1h"
			}
			if err := timeRange(q, since, from, to); err != nil {
				return err
			}
			var fvs []analyze.FlowVerdict
			if err := apiDo("GET", apiURL(serverURL, "/analysis/flows", q), nil, &fvs); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), fvs)
			}
			return printFlowVerdicts(cmd.OutOrStdout(), fvs)
		},
	}
	flows.Flags().StringVar(&verdict, "verdict", "", "permitted, escaped, rejected, misdropped or unscoped")
	flows.Flags().StringVar(&rule, "rule", "", `the deciding rule, as the report names it ("sock-shop@v1#0", "sock-shop@v1 catch-all")`)
	flows.Flags().StringVar(&inScope, "in-scope", "", "only flows one of whose sides this scope decided")
	flows.Flags().IntVar(&limit, "limit", 100, "at most this many flows")
	cmd.AddCommand(flows)
	return cmd
}

func printReport(w io.Writer, rep *analyze.Report, by string) error {
	var names []string
	for s, v := range rep.Versions {
		names = append(names, s+"@"+v)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "scope %s, %s → %s, %d flows (%d translated copies not judged again)\nversions: %s\n\n", rep.Scope,
		rep.From.Local().Format(time.DateTime), rep.To.Local().Format(time.DateTime), rep.Flows, rep.Translated, strings.Join(names, " "))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := "PERMITTED\tESCAPED\tREJECTED\tMISDROPPED\tUNSCOPED"
	row := func(c analyze.Counts) string {
		return fmt.Sprintf("%d\t%d\t%d\t%d\t%d", c.Permitted, c.Escaped, c.Rejected, c.Misdropped, c.Unscoped)
	}
	switch by {
	case "rule":
		fmt.Fprintln(tw, "RULE\tACTION\t"+head+"\tINTENT")
		for _, r := range rep.ByRule {
			name := r.Rule.String()
			if name == "" {
				name = "(no scope)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, dash(r.Action.String()), row(r.Counts), r.Intent)
		}
	case "minute":
		fmt.Fprintln(tw, "MINUTE\t"+head)
		for _, m := range rep.ByMinute {
			fmt.Fprintf(tw, "%s\t%s\n", m.Minute.Local().Format("15:04"), row(m.Counts))
		}
	case "verdict", "":
		fmt.Fprintln(tw, "VERDICT\tFLOWS")
		for _, v := range policy.Verdicts {
			fmt.Fprintf(tw, "%s\t%d\n", v, rep.Counts.Of(v))
		}
	default:
		return fmt.Errorf("--by %s: want verdict, rule or minute", by)
	}
	return tw.Flush()
}

func printFlowVerdicts(w io.Writer, fvs []analyze.FlowVerdict) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tVERDICT\tSRC\tDST\tPROTO/PORT\tRULE\tEGRESS\tINGRESS\tFLOW")
	// A side the analyzed scope does not decide (a flow crossing its
	// edge) is shown in parentheses: kept, not judged.
	side := func(d policy.SideDecision, s policy.Direction, judged policy.Direction) string {
		if d.Action == policy.NoAction {
			return "-"
		}
		out := d.Action.String() + " " + d.Rule.String()
		if judged != policy.Both && judged != s {
			out = "(" + out + ")"
		}
		return out
	}
	name := func(ip, ns, n string) string {
		if n == "" {
			return ip
		}
		if ns == "" {
			return n
		}
		return ns + "/" + n
	}
	for _, fv := range fvs {
		f := fv.Flow
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s/%d\t%s\t%s\t%s\t%s\n", f.Start.Local().Format(time.TimeOnly), fv.Verdict,
			name(f.Src.IP, f.Src.Namespace, f.Src.Name), name(f.Dst.IP, f.Dst.Namespace, f.Dst.Name), f.Proto, f.Dst.Port,
			dash(fv.Rule.String()), side(fv.Decision.Egress, policy.Egress, fv.Judged), side(fv.Decision.Ingress, policy.Ingress, fv.Judged), f.ID)
	}
	return tw.Flush()
}

func newComplianceCmd() *cobra.Command {
	var serverURL, output string
	var all bool
	cmd := &cobra.Command{
		Use:   "compliance",
		Short: "Compliance monitoring of the enforced policy versions",
	}
	serverFlag(cmd, &serverURL)
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	alerts := &cobra.Command{
		Use:   "alerts",
		Short: "List compliance alerts (Escaped and Misdropped flows of enforced versions)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			var as []compliance.Alert
			if err := apiDo("GET", apiURL(serverURL, "/compliance/alerts", q), nil, &as); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), as)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tVERDICT\tSCOPE\tRULE\tEDGE\tCOUNT\tFIRST\tLAST\tACKED")
			for _, a := range as {
				acked := "-"
				if a.Acked {
					acked = a.AckedBy
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.ID, a.Verdict, a.Scope, a.Rule, a.Edge, a.Count,
					a.First.Local().Format(time.DateTime), a.Last.Local().Format(time.DateTime), acked)
			}
			return tw.Flush()
		},
	}
	alerts.Flags().BoolVar(&all, "all", false, "include acknowledged alerts")
	ack := &cobra.Command{
		Use:   "ack ID",
		Short: "Acknowledge an alert (it reopens if the problem happens again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var a compliance.Alert
			if err := apiDo("POST", apiURL(serverURL, "/compliance/alerts/"+url.PathEscape(args[0])+"/ack", nil), nil, &a); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "alert %s acknowledged by %s\n", a.ID, a.AckedBy)
			return nil
		},
	}
	cmd.AddCommand(alerts, ack)
	return cmd
}
