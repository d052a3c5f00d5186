package main

import (
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/vuln"
)

// newVulndbCmd manages the standalone vulnerability database shared with
// `palisade scan image`.
func newVulndbCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "vulndb",
		Short: "Manage the OSV vulnerability database used by `palisade scan`",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data", defaultDataDir("vuln"), "data directory holding the vulnerability database")

	imp := &cobra.Command{
		Use:   "import PATH",
		Short: "Import OSV records from a directory or a zip (re-importing updates records in place)",
		Long: `Import OSV JSON records from a directory tree or a zip archive: an osv.dev
per-ecosystem export (e.g. Debian/all.zip, Alpine/all.zip) or the data/osv
directory of the golang.org/x/vulndb module, GitHub's advisory database in OSV
format (its CVSS vectors score the Go and distribution records they alias).
The distributions' own formats are read too and converted to the same records:
Debian's security tracker JSON (security-tracker.debian.org/tracker/data/json)
and Alpine's secdb files (secdb.alpinelinux.org/<branch>/<repo>.json).
Records already present are replaced by their new version.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := vuln.Open(dataDir, vuln.Options{Concurrency: 1, Logger: cliLogger(cmd)})
			if err != nil {
				return err
			}
			defer svc.Close()
			var bar *progressbar.ProgressBar
			progress := func(done, total int) {
				if bar == nil {
					bar = progressbar.NewOptions(total,
						progressbar.OptionSetWriter(os.Stderr),
						progressbar.OptionSetDescription("importing OSV records"),
						progressbar.OptionShowCount(),
						progressbar.OptionSetWidth(30),
						progressbar.OptionThrottle(100*time.Millisecond),
						progressbar.OptionOnCompletion(func() { fmt.Fprintln(os.Stderr) }),
					)
				}
				_ = bar.Set(done)
			}
			stats, err := svc.ImportDB(cmd.Context(), args[0], progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%d documents: %d added, %d updated, %d skipped; %d advisories in %s\n",
				stats.Files, stats.Added, stats.Updated, stats.Skipped, stats.Info.Advisories, dataDir)
			for _, e := range stats.Errors {
				fmt.Fprintln(cmd.ErrOrStderr(), "skipped:", e)
			}
			return nil
		},
	}
	info := &cobra.Command{
		Use:   "info",
		Short: "Show how many advisories the database holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			svc, err := vuln.Open(dataDir, vuln.Options{Concurrency: 1, Logger: cliLogger(cmd)})
			if err != nil {
				return err
			}
			defer svc.Close()
			i, err := svc.DB().Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d advisories (generation %d) in %s\n", i.Advisories, i.Generation, dataDir)
			return nil
		},
	}
	cmd.AddCommand(imp, info)
	return cmd
}
