package main

import (
	"bytes"
	"errors"
	"strings"

	"github.com/spf13/cobra"
)

// execute runs a subcommand with args and stdin as the CLI would, and
// returns what it printed (stdout and stderr together).
func execute(cmd *cobra.Command, stdin string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// exitCode is the process exit code main would use for err: 0 for nil,
// the code of an exitError, -1 for any other error.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return -1
}
