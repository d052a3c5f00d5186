package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newFlowsCmd is a placeholder until its area lands.
func newFlowsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "flows",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("flows: not built yet")
		},
	}
}
