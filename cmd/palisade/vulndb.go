package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newVulndbCmd is a placeholder until its area lands.
func newVulndbCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "vulndb",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("vulndb: not built yet")
		},
	}
}
