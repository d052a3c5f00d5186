package main

import (
	"fmt"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/palisade-dev/palisade/internal/server"
)

func newServerCmd() *cobra.Command {
	var (
		cfg        server.Config
		kubeconfig string
		cluster    string
		connect    []string
		insecure   string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the Palisade control plane (REST API, connectors, embedded storage)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if kubeconfig != "" {
				connect = append(connect, cluster+"="+kubeconfig)
			}
			for _, c := range connect {
				name, path, ok := strings.Cut(c, "=")
				if !ok || name == "" || path == "" {
					return fmt.Errorf("--connect %q: want NAME=KUBECONFIG", c)
				}
				rc, err := clientcmd.BuildConfigFromFlags("", path)
				if err != nil {
					return fmt.Errorf("cluster %s: kubeconfig %s: %w", name, path, err)
				}
				cfg.Clusters = append(cfg.Clusters, server.Cluster{Name: name, Config: rc})
			}
			cfg.TLS = true
			if insecure != "" {
				if cmd.Flags().Changed("listen") || cfg.TLSCert != "" {
					return fmt.Errorf("give --listen (HTTPS) or --insecure-listen (plain HTTP on loopback), not both")
				}
				cfg.Listen, cfg.TLS = insecure, false
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			s, err := server.Start(ctx, cfg)
			if err != nil {
				return err
			}
			if cfg.TLS && cfg.TLSCert == "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "clients trust the server with --ca %s (or PALISADE_CA) and authenticate with --token-file %s\n",
					filepath.Join(cfg.DataDir, server.CACertFile), filepath.Join(cfg.DataDir, server.AdminTokenFile))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "palisade server listening on %s\n", s.URL())
			<-ctx.Done()
			return s.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data", defaultDataDir("server"), "data directory (embedded storage)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7070", "address to serve the API on, over HTTPS")
	f.StringVar(&insecure, "insecure-listen", "", "serve plain HTTP on this loopback address instead of HTTPS (development only)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serving certificate (PEM); default: one from the CA the server creates in <data>/ca.crt")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "the serving certificate's private key (PEM)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of a cluster to watch")
	f.StringVar(&cluster, "cluster", "default", "name of the cluster given by --kubeconfig")
	f.StringArrayVar(&connect, "connect", nil, "NAME=KUBECONFIG of another cluster to watch (repeatable)")
	f.StringArrayVar(&cfg.AllowedHosts, "allowed-host", nil, "a host name clients reach the server by (repeatable); IP addresses, localhost and the machine's name always work")
	f.DurationVar(&cfg.AgentCertLifetime, "agent-cert-lifetime", 30*24*time.Hour, "validity of the client certificates enrolled agents get (they renew after two thirds of it)")
	f.DurationVar(&cfg.EnrollTokenTTL, "enroll-token-ttl", 24*time.Hour, "default validity of an agent enrollment token (palisade agent token create)")
	f.Float64Var(&cfg.AgentBatchRate, "agent-batch-rate", 10, "flow batches per second one node's agent may post (429 with Retry-After past it)")
	f.IntVar(&cfg.AgentBatchBurst, "agent-batch-burst", 50, "flow batches one node's agent may post at once (a spool drained after an outage)")
	f.DurationVar(&cfg.AgentClockSkew, "agent-clock-skew", 5*time.Minute, "how far ahead of the server's clock an agent's flows may be stamped")
	f.DurationVar(&cfg.FlowRetention, "flow-retention", 7*24*time.Hour, "drop stored flows older than this")
	f.DurationVar(&cfg.InventoryRetention, "inventory-retention", 0, "drop inventory history (superseded versions, deleted workloads, ended address leases) older than this; lookups inside it answer as before (default: 30 days or --flow-retention, whichever is longer)")
	f.DurationVar(&cfg.DiscoveryTimeout, "discovery-timeout", server.DefaultDiscoveryTimeout, "end a policy discovery job still running after this long (its status says so; no version is stored)")
	addScanFlags(f, &cfg)
	f.Var((*byteSize)(&cfg.FlowMaxBytes), "flow-max-bytes", "cap on the flow store's files, e.g. 20GiB or 500MB (default: half of the data disk's free space at start)")
	return cmd
}
