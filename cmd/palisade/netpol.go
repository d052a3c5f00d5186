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

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/policy"
	"github.com/palisade-dev/palisade/internal/policy/netpol"
)

// newImportCmd is `palisade import`: bring policies written for other
// systems into Palisade.
func newImportCmd() *cobra.Command {
	imp := &cobra.Command{
		Use:   "import",
		Short: "Import policies written elsewhere as a version of a scope",
	}
	imp.AddCommand(newImportNetworkPolicyCmd())
	return imp
}

func newImportNetworkPolicyCmd() *cobra.Command {
	var (
		serverURL, cluster, scope, namespace, output string
		files                                        []string
		dryRun                                       bool
	)
	cmd := &cobra.Command{
		Use:     "networkpolicy (-f FILE|DIR|- ... | --cluster NAME) --scope S",
		Aliases: []string{"networkpolicies", "netpol"},
		Short:   "Import Kubernetes NetworkPolicies (networking.k8s.io/v1) as a new version of a scope",
		Long: `Import Kubernetes NetworkPolicies as a new version of a scope, with their
upstream meaning: each selected pod is isolated per direction (policyTypes,
defaulted as the API server does), and allowed what the union of the
policies' rules allows. Analysis of the version then tells what the
policies would have allowed and blocked (palisade analyze --scope S
--version V).

From files (-f, YAML or JSON, several documents, Lists; other kinds are
skipped and reported) or from a cluster connected to the server (--cluster
NAME, as given to palisade server --cluster/--connect). Importing what the
newest version already holds changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if scope == "" {
				return errors.New("--scope is required: the scope the imported version belongs to")
			}
			if (len(files) == 0) == (cluster == "") {
				return errors.New("give the NetworkPolicies with -f FILE (or DIR, or - for stdin) or --cluster NAME, not both")
			}
			req := netpol.ImportRequest{Cluster: cluster, Namespace: namespace, DryRun: dryRun}
			if len(files) > 0 {
				var err error
				if req.Files, err = readNetpolFiles(files, cmd.InOrStdin()); err != nil {
					return err
				}
				// Refuse a bad file here, with its file:line, before the
				// server sees it (the server checks again).
				if _, _, err := netpol.ReadFiles(req.Files, namespace); err != nil {
					return err
				}
			}
			var res netpol.ImportResult
			u := apiURL(serverURL, "/scopes/"+url.PathEscape(scope)+"/import/networkpolicy", nil)
			if err := apiDo("POST", u, req, &res); err != nil {
				return err
			}
			return printImport(cmd.OutOrStdout(), cmd.ErrOrStderr(), &res, output)
		},
	}
	serverFlag(cmd, &serverURL)
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "file, directory (its *.yaml, *.yml and *.json) or - (stdin) of NetworkPolicies; repeatable")
	cmd.Flags().StringVar(&cluster, "cluster", "", "import every NetworkPolicy of this cluster connected to the server")
	cmd.Flags().StringVar(&scope, "scope", "", "scope the new version belongs to (required)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace of policies in files that name none")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "translate and show the version without saving it")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table (summary and diff), yaml (the version as a PolicyVersion document) or json")
	return cmd
}

// readNetpolFiles reads -f arguments: files, directories (their YAML and
// JSON files, recursively, in name order) and - (stdin).
func readNetpolFiles(paths []string, stdin io.Reader) ([]netpol.File, error) {
	var out []netpol.File
	read := func(name string, r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, netpol.MaxFileSize+1))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, netpol.File{Name: name, Content: string(b)})
		return nil
	}
	for _, p := range paths {
		if p == "-" {
			if err := read("-", stdin); err != nil {
				return nil, err
			}
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		names := []string{p}
		if st.IsDir() {
			names = nil
			err := filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
				if err != nil {
					return err
				}
				switch filepath.Ext(path) {
				case ".yaml", ".yml", ".json":
					if !d.IsDir() {
						names = append(names, path)
					}
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", p)
			}
			sort.Strings(names)
		}
		for _, n := range names {
			f, err := os.Open(n)
			if err != nil {
				return nil, err
			}
			err = read(n, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func printImport(w, errw io.Writer, res *netpol.ImportResult, output string) error {
	for _, s := range res.Skipped {
		fmt.Fprintf(errw, "skipped %s: %s %s/%s is not a NetworkPolicy\n", s.Pos, s.APIVersion, s.Kind, s.Name)
	}
	switch output {
	case "json":
		return printJSON(w, res)
	case "yaml":
		if res.Content == nil {
			return errors.New("the server returned no version content")
		}
		v := res.Content.Clone()
		v.Name = res.Version
		return policy.Marshal(w, []any{policy.VersionDoc(v)})
	case "table", "":
	default:
		return fmt.Errorf("-o %s: want table, yaml or json", output)
	}
	switch {
	case res.Unchanged:
		fmt.Fprintf(w, "scope %s %s already holds these %d NetworkPolicies (%d intents): no change\n",
			res.Scope, res.Version, res.Policies, res.Intents)
		return nil
	case res.DryRun:
		fmt.Fprintf(w, "dry run: %d NetworkPolicies would become scope %s %s (%d intents)", res.Policies, res.Scope, res.Version, res.Intents)
	default:
		fmt.Fprintf(w, "imported %d NetworkPolicies as scope %s %s (%d intents)", res.Policies, res.Scope, res.Version, res.Intents)
	}
	if res.Previous != "" {
		fmt.Fprintf(w, "; changes from %s:\n", res.Previous)
	} else {
		fmt.Fprintln(w, ":")
	}
	fmt.Fprintln(w, "  "+strings.Join(res.Diff, "\n  "))
	return nil
}
