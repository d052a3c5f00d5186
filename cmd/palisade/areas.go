package main

import "github.com/spf13/cobra"

// areaCommands lists the top-level commands of every product area. Each
// constructor lives in the file named after its area (server.go, lab.go, ...).
func areaCommands() []*cobra.Command {
	return append([]*cobra.Command{
		newServerCmd(),
		newInventoryCmd(),
		newDevCmd(),
		newDemoCmd(),
		newLabCmd(),
		newScanCmd(),
		newVulndbCmd(),
		newAgentCmd(),
		newFlowsCmd(),
		newTokenCmd(),
		newAuditCmd(),
		newImportCmd(),
		newEnforceCmd(),
		newDiscoverCmd(),
	}, policyCommands()...)
}
