package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/mqttsec/mqttsec/tlsconf"
	"github.com/spf13/cobra"
)

func init() {
	rootCmd.AddCommand(newCertsCmd())
}

// newCertsCmd builds "mqttsec certs": a development CA for TLS listeners
// and client certificates.
func newCertsCmd() *cobra.Command {
	certs := &cobra.Command{
		Use:   "certs",
		Short: "Development certificate authority: a CA, a localhost server certificate, client certificates",
		Long: `certs manages a development certificate authority in a folder.

It is meant for tests and local development, not production: the CA key sits
next to the certificates (mode 0600).`,
	}

	var dir string
	initCmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Write a CA and a server certificate for localhost, 127.0.0.1 and ::1",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ca, err := tlsconf.CreateDevCA(dir)
			if errors.Is(err, fs.ErrExist) {
				return &exitError{code: 1, err: fmt.Errorf("%s already holds a CA; use \"mqttsec certs client\" to issue client certificates", dir)}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			cert, key := ca.ServerFiles()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CA certificate:     %s\n", ca.CAFile())
			fmt.Fprintf(out, "server certificate: %s\n", cert)
			fmt.Fprintf(out, "server key:         %s\n", key)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "folder for the CA (created with mode 0700)")
	_ = initCmd.MarkFlagRequired("dir")

	var clientDir string
	clientCmd := &cobra.Command{
		Use:   "client --dir DIR NAME",
		Short: "Issue a client certificate with common name NAME (and DNS name NAME when it is a host name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ca, err := tlsconf.OpenDevCA(clientDir)
			if errors.Is(err, fs.ErrNotExist) {
				return &exitError{code: 1, err: fmt.Errorf("no CA in %s; run \"mqttsec certs init --dir %s\" first", clientDir, clientDir)}
			}
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if _, err := ca.IssueClient(args[0]); err != nil {
				return &exitError{code: 2, err: err}
			}
			cert, key := ca.ClientFiles(args[0])
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "client certificate: %s\n", cert)
			fmt.Fprintf(out, "client key:         %s\n", key)
			return nil
		},
	}
	clientCmd.Flags().StringVar(&clientDir, "dir", "", "folder of the CA written by \"certs init\"")
	_ = clientCmd.MarkFlagRequired("dir")

	certs.AddCommand(initCmd, clientCmd)
	return certs
}
