package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newAgentCmd is a placeholder until its area lands.
func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("agent: not built yet")
		},
	}
}
