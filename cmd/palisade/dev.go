package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/devkube"
)

func newDevCmd() *cobra.Command {
	dev := &cobra.Command{
		Use:   "dev",
		Short: "Developer tools: a local Kubernetes control plane for tests and the demo",
	}
	kube := &cobra.Command{
		Use:   "kube",
		Short: "Run a real kube-apiserver, etcd and kube-controller-manager on 127.0.0.1",
	}
	kube.AddCommand(
		&cobra.Command{
			Use:   "build",
			Short: "Build and cache the control-plane binaries (about 8 minutes cold)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				b, err := devkube.EnsureBinaries(cmd.Context(), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n%s\n", b.Etcd, b.APIServer, b.ControllerManager)
				return nil
			},
		},
		&cobra.Command{
			Use:   "up",
			Short: "Start the shared dev cluster (reused if running) and print its kubeconfig",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := devkube.Up(cmd.Context(), cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "API server %s\nexport KUBECONFIG=%s\n", c.URL, c.Kubeconfig)
				return nil
			},
		},
		&cobra.Command{
			Use:   "down",
			Short: "Stop the shared dev cluster (its data is kept)",
			Args:  cobra.NoArgs,
			RunE:  func(*cobra.Command, []string) error { return devkube.Down() },
		},
		&cobra.Command{
			Use:   "env",
			Short: "Print shell exports for the shared dev cluster",
			Args:  cobra.NoArgs,
			RunE:  func(cmd *cobra.Command, _ []string) error { return devkube.Env(cmd.OutOrStdout()) },
		},
	)
	dev.AddCommand(kube)
	return dev
}
