package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/flow"
)

// newFlowsFollowCmd is `palisade flows follow [FILTER]`: a live tail of
// the flows as the server receives them (like `hubble observe -f`).
func newFlowsFollowCmd(af *apiFlags, output *string) *cobra.Command {
	return &cobra.Command{
		Use:   "follow [FILTER]",
		Short: "Print flows matching a filter as they arrive, until interrupted",
		Example: `  palisade flows follow 'dst.namespace = "sock-shop"'
  palisade flows follow 'replied = false' -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch *output {
			case "table", "", "json":
			default:
				return fmt.Errorf("output %q: want table or json", *output)
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			var src string
			if len(args) == 1 {
				src = args[0]
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = c.FollowFlows(ctx, src, func(f *flow.Flow) error {
				w := cmd.OutOrStdout()
				if *output == "json" {
					return json.NewEncoder(w).Encode(f)
				}
				_, err := fmt.Fprintln(w, followLine(f))
				return err
			})
			if ctx.Err() != nil {
				return nil
			}
			return filterErr(err, args)
		},
	}
}

// followLine is one flow on one line.
func followLine(f *flow.Flow) string {
	var rel []string
	for _, r := range f.Related {
		rel = append(rel, r.Reason)
	}
	return fmt.Sprintf("%s  %s  %s → %s  pkts %d/%d  bytes %d/%d  flags %s  replied %v  points %d  related %s  %s",
		f.Start.Local().Format("15:04:05.000"), f.Proto, flowsEndpoint(f.Src), flowsEndpoint(f.Dst),
		f.FwdPackets, f.RevPackets, f.FwdBytes, f.RevBytes, dash(strings.Join(f.Flags, ",")), f.Replied,
		len(f.Points), dash(strings.Join(rel, ",")), f.ID)
}
