package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/apiclient"
	"github.com/palisade-dev/palisade/internal/flow"
)

// newFlowsFollowCmd is `palisade flows follow [FILTER]`: a live tail of
// the flows as the server receives them (like `hubble observe -f`).
func newFlowsFollowCmd(serverURL, output *string) *cobra.Command {
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
			q := url.Values{}
			if len(args) == 1 {
				q.Set("filter", args[0])
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err := followFlows(ctx, apiclient.Server(*serverURL)+flow.FollowPath+"?"+q.Encode(), func(f *flow.Flow) error {
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

// followFlows streams the flows of the follow endpoint at u to fn until
// ctx ends or the server closes the stream.
func followFlows(ctx context.Context, u string, fn func(*flow.Flow) error) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	if tok := os.Getenv("PALISADE_TOKEN"); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the Palisade server: %w (is `palisade server` running? set --server or PALISADE_SERVER)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &apiclient.Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue // keep-alive
		}
		var f flow.Flow
		if err := json.Unmarshal(line, &f); err != nil {
			return fmt.Errorf("follow: bad line from the server: %w", err)
		}
		if err := fn(&f); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow: %w", err)
	}
	return fmt.Errorf("follow: the server closed the stream")
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
