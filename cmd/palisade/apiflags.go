package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/palisade-dev/palisade/internal/version"
	"github.com/palisade-dev/palisade/pkg/client"
)

// apiFlags are the flags of every command that calls the server:
//
//	var af apiFlags
//	af.register(cmd)            // on the command group, persistent
//	c, err := af.client()       // in RunE
type apiFlags struct {
	server, token, tokenFile, ca string
}

func (f *apiFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.server, "server", "", "Palisade server URL (default $"+client.EnvServer+" or "+client.DefaultServer+")")
	f.registerCredentials(cmd)
}

// registerCredentials registers --token, --token-file and --ca.
func (f *apiFlags) registerCredentials(cmd *cobra.Command) {
	p := cmd.PersistentFlags()
	p.StringVar(&f.token, "token", "", "API token (default $"+client.EnvToken+")")
	p.StringVar(&f.tokenFile, "token-file", "", "file holding the API token, e.g. <data>/admin-token")
	p.StringVar(&f.ca, "ca", "", "CA certificate to trust for the server, e.g. <data>/ca.crt (default $"+client.EnvCA+")")
}

// resolveToken: --token, else --token-file, else $PALISADE_TOKEN.
func (f *apiFlags) resolveToken() (string, error) {
	if f.token != "" && f.tokenFile != "" {
		return "", errors.New("give --token or --token-file, not both")
	}
	if f.token != "" {
		return f.token, nil
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s is empty", f.tokenFile)
		}
		return tok, nil
	}
	return os.Getenv(client.EnvToken), nil
}

func (f *apiFlags) client() (*client.Client, error) {
	tok, err := f.resolveToken()
	if err != nil {
		return nil, err
	}
	ca := f.ca
	if ca == "" {
		ca = os.Getenv(client.EnvCA)
	}
	return client.New(client.Options{Server: f.server, Token: tok, CAFile: ca, UserAgent: "palisade-cli/" + version.Version})
}

// cliAPI holds the credentials flags of commands that take --server on
// their own (serverFlag) and call apiDo.
var cliAPI apiFlags

// apiDo calls the API at the full URL u (server + path + query) with the
// credentials of cliAPI, sending in as JSON (when not nil) and decoding
// the answer into out (when not nil).
func apiDo(method, u string, in, out any) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	f := cliAPI
	f.server = pu.Scheme + "://" + pu.Host
	c, err := f.client()
	if err != nil {
		return err
	}
	return c.Do(context.Background(), client.Request{Method: method, Path: pu.Path, Query: pu.Query(), JSON: in}, out)
}
