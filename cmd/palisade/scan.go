package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/version"
	"github.com/palisade-dev/palisade/internal/vuln"
	"github.com/palisade-dev/palisade/internal/vuln/image"
	"github.com/palisade-dev/palisade/internal/vuln/sbom"
)

// newScanCmd is the standalone scanner: `palisade scan image REF`.
func newScanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Scan images for vulnerable packages (standalone, like trivy)",
	}
	var dataDir, output, platform string
	img := &cobra.Command{
		Use:   "image REF",
		Short: "Inventory an image's packages and match them against the vulnerability database",
		Long: `REF is a registry reference (registry/repo:tag or repo@sha256:...; 127.0.0.1 and
localhost registries are reached over plain HTTP), oci-layout:DIR,
docker-archive:FILE (docker save), or dir:PATH (a root filesystem).

The vulnerability database lives in --data and is filled by
'palisade vulndb import'. Registry credentials are those stored for the
registry in the same data directory, else anonymous access.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "json" && output != "table" && output != "cyclonedx" {
				return fmt.Errorf("-o %q: want json, table or cyclonedx", output)
			}
			src, err := image.ParseSource(args[0])
			if err != nil {
				return err
			}
			plat, err := v1.ParsePlatform(platform)
			if err != nil || plat.OS == "" || plat.Architecture == "" {
				return fmt.Errorf("--platform %q: want OS/ARCH[/VARIANT], e.g. linux/arm64", platform)
			}
			svc, err := vuln.Open(dataDir, vuln.Options{Concurrency: 1, Platform: plat, Logger: cliLogger(cmd)})
			if err != nil {
				return err
			}
			defer svc.Close()
			if info, err := svc.DB().Info(); err == nil && info.Advisories == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the vulnerability database in %s is empty; run `palisade vulndb import PATH --data %s`\n", dataDir, dataDir)
			}
			rep, err := svc.ScanSource(cmd.Context(), src)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch output {
			case "json":
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(rep)
			case "cyclonedx":
				return sbom.Write(out, sbom.CycloneDX(rep, version.Version))
			}
			return writeTable(out, rep)
		},
	}
	img.Flags().StringVarP(&output, "output", "o", "table", "output format: json, table or cyclonedx")
	img.Flags().StringVar(&dataDir, "data", defaultDataDir("vuln"), "data directory holding the vulnerability database")
	img.Flags().StringVar(&platform, "platform", "linux/amd64", "platform (`OS/ARCH[/VARIANT]`) chosen in a multi-platform index; OS packages are matched for the image's platform")
	cmd.AddCommand(img)
	return cmd
}

func writeTable(w io.Writer, rep *vuln.ImageReport) error {
	distro := "unknown OS"
	if rep.Distro != nil {
		distro = rep.Distro.PrettyName
	}
	s := rep.Summary
	if rep.Arch != "" {
		distro += ", " + strings.TrimSuffix(rep.OS+"/"+rep.Arch+"/"+rep.Variant, "/")
	}
	fmt.Fprintf(w, "%s %s (%s): %d packages, %d vulnerabilities (critical %d, high %d, medium %d, low %d, unknown %d), max CVSS %.1f; "+
		"not ruled out by reachability: critical %d, high %d, max CVSS %.1f; %d whose vulnerable code is not linked in\n\n",
		rep.Image, rep.Digest, distro, len(rep.Packages), s.Critical+s.High+s.Medium+s.Low+s.Unknown,
		s.Critical, s.High, s.Medium, s.Low, s.Unknown, s.MaxScore, s.ReachableCritical, s.ReachableHigh, s.ReachableMaxScore, s.Unreachable)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tINSTALLED\tFIXED\tID\tALIASES\tSEVERITY\tSCORE\tREACHABLE\tTYPE")
	for _, f := range rep.Findings {
		score := ""
		if f.Score > 0 {
			score = fmt.Sprintf("%.1f", f.Score)
		}
		reach := "-"
		if f.Reachable != nil {
			reach = map[bool]string{true: "yes", false: "no"}[*f.Reachable]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Package, f.Installed, fixedColumn(f), f.ID,
			strings.Join(f.Aliases, ","), f.Severity, score, reach, f.Type)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nFIXED lists every branch's fix; * marks the lowest one above the installed version. REACHABLE: Go findings only (vulnerable functions linked in).")
	for _, warn := range rep.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	return nil
}

// fixedColumn lists every fixed version, the lowest applicable one starred.
func fixedColumn(f vuln.Finding) string {
	vs := f.FixedVersions
	if len(vs) == 0 && f.Fixed != "" {
		vs = []string{f.Fixed}
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v
		if v == f.Fixed {
			out[i] += "*"
		}
	}
	return strings.Join(out, ", ")
}

// cliLogger is the scanner's logger for the standalone commands: warnings
// and errors only (the server logs its informational lines, such as the
// layer cache's cap).
func cliLogger(cmd *cobra.Command) *slog.Logger {
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
