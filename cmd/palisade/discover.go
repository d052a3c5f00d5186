package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/palisade-dev/palisade/internal/server"
)

// newDiscoverCmd is `palisade discover`: policy discovery from the flows
// of a window (application dependency mapping).
func newDiscoverCmd() *cobra.Command {
	var (
		serverURL, scope, since, fromS, toS, exclude, output string
		asVersion                                            bool
		prefix                                               int
	)
	cmd := &cobra.Command{
		Use:   "discover --scope S (--since D | --from T --to T) [--exclude FILTER] [--as-version] [-o yaml|networkpolicy|json]",
		Short: "Discover the minimal allow-list a scope's observed traffic needs",
		Long: `Discover policy from stored flows: every flow of the window answered by its
server, with both ends resolved through the inventory at the flow's own
time, becomes evidence for one intent per (consumer cluster, provider)
edge. Clusters are pinned inventory filters, Kubernetes owners, app
labels or single pods; services are providers when the traffic went
through their cluster IP or node port; addresses no workload holds are
the narrowest subnets seen (--external-prefix widens them).

-o yaml (default) is the policy-as-code format, applicable as is with
palisade apply, each rule explained by its flows in a comment; -o
networkpolicy gives Kubernetes NetworkPolicies with the same meaning;
-o json the rules with their evidence. --as-version stores the rules as a
new draft version of the scope. The same flows and inventory give
byte-identical output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return errors.New("--scope is required")
			}
			switch output {
			case "yaml", "json", "networkpolicy":
			default:
				return fmt.Errorf("-o %s: want yaml, networkpolicy or json", output)
			}
			req := server.DiscoverRequest{Since: since, Exclude: exclude, ExternalPrefix: prefix, AsVersion: asVersion}
			if fromS != "" || toS != "" {
				if since != "" {
					return errors.New("give --since or --from/--to, not both")
				}
				var err error
				if req.From, err = parseCLITime("--from", fromS); err != nil {
					return err
				}
				if req.To, err = parseCLITime("--to", toS); err != nil {
					return err
				}
			} else if since == "" {
				return errors.New("give the window: --since D (e.g. 1h) or --from T --to T")
			}
			var job server.DiscoveryJob
			if err := apiDo("POST", apiURL(serverURL, "/scopes/"+url.PathEscape(scope)+"/discover", nil), req, &job); err != nil {
				return err
			}
			bar := progressBar(cmd.ErrOrStderr())
			for job.State == "running" {
				bar(job.Percent)
				time.Sleep(200 * time.Millisecond)
				if err := apiDo("GET", apiURL(serverURL, "/discovery/"+url.PathEscape(job.ID), nil), nil, &job); err != nil {
					return err
				}
			}
			bar(-1)
			if job.State == "failed" {
				return fmt.Errorf("discovery of scope %s failed: %s", scope, job.Error)
			}
			if job.Result == nil {
				return errors.New("the server returned no discovery result")
			}
			if job.Version != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "stored as scope %s %s (draft); analyze it with: palisade analyze --scope %s --version %s --since 1h\n",
					scope, job.Version, scope, job.Version)
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				return printJSON(out, job.Result)
			case "networkpolicy":
				return job.Result.WriteNetworkPolicies(out)
			}
			_, err := io.WriteString(out, job.YAML)
			return err
		},
	}
	serverFlag(cmd, &serverURL)
	cmd.Flags().StringVar(&scope, "scope", "", "scope to discover policy for (required)")
	cmd.Flags().StringVar(&since, "since", "", "window: this long back from now (e.g. 15m, 24h)")
	cmd.Flags().StringVar(&fromS, "from", "", "window start (RFC 3339)")
	cmd.Flags().StringVar(&toS, "to", "", "window end (RFC 3339; default now)")
	cmd.Flags().StringVar(&exclude, "exclude", "", "flow filter: matching flows are ignored (e.g. 'dst.port = 22')")
	cmd.Flags().BoolVar(&asVersion, "as-version", false, "store the rules as a new draft version of the scope")
	cmd.Flags().IntVar(&prefix, "external-prefix", 32, "widen external IPv4 addresses to this prefix length (e.g. 24)")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output: yaml (policy as code), networkpolicy or json")
	return cmd
}

func parseCLITime(flag, s string) (time.Time, error) {
	if s == "" {
		if flag == "--to" {
			return time.Now().UTC(), nil
		}
		return time.Time{}, fmt.Errorf("%s: give a time (RFC 3339, e.g. 2026-12-01T10:00:00Z)", flag)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%s: %q is not an RFC 3339 time (e.g. 2026-12-01T10:00:00Z)", flag, s)
	}
	return t, nil
}

// progressBar draws a bar on w when w is a terminal; percent < 0 ends it.
func progressBar(w io.Writer) func(percent int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func(int) {}
	}
	drawn := false
	return func(p int) {
		if p < 0 {
			if drawn {
				fmt.Fprint(w, "\r\033[K")
			}
			return
		}
		n := p * 30 / 100
		fmt.Fprintf(w, "\rdiscovering [%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat(".", 30-n), p)
		drawn = true
	}
}
