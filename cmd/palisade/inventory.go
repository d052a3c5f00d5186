package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newInventoryCmd is a placeholder until its area lands.
func newInventoryCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "inventory",
		Hidden: true,
		RunE: func(*cobra.Command, []string) error {
			return errors.New("inventory: not built yet")
		},
	}
}
