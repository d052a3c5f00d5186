// Command palisade is the single binary of the Palisade platform: control plane,
// node agent, scanner, lab and CLI. Subcommands only parse flags and wire
// packages together; the work lives under internal/.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/version"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "palisade:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "palisade",
		Short:         "Kubernetes workload visibility, microsegmentation and vulnerability scanning",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd())
	// Each area registers its commands from its own file in this package.
	root.AddCommand(areaCommands()...)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the Palisade version and commit (stamped by make build)",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "palisade %s\n", version.String())
		},
	}
}
