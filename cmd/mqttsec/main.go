// Command mqttsec runs a hardened MQTT broker and the tools around it:
// serve, scan, lint, passwd, certs, acl and keys.
//
// Each subcommand lives in its own file and registers itself on rootCmd in
// an init function.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:           "mqttsec",
	Short:         "MQTT security tools: a hardened broker, a scanner, a linter and admin tools",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// exitError carries a process exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mqttsec:", err)
		code := 1
		if ee, ok := err.(*exitError); ok {
			code = ee.code
		}
		os.Exit(code)
	}
}
