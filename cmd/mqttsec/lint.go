package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mqttsec/mqttsec/lint"
)

// lintOptions are the flags of "mqttsec lint" (and of its "acl lint"
// alias).
type lintOptions struct {
	fileFormat    string
	format        string
	failOn        string
	clientIDBound bool
}

func init() {
	rootCmd.AddCommand(newLintCmd())
}

func newLintCmd() *cobra.Command {
	o := &lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Report security findings in broker configuration files",
		Long: `Report security findings, with file and line, in:

  - a Mosquitto mosquitto.conf, with its include_dir files and the password
    file, acl_file and key files it references (relative to its folder);
  - a Mosquitto (or mqttsec) password file;
  - a Mosquitto acl_file or a Casbin policy for acl.Model ("acl lint" is an
    alias for these).

The format of each file is detected unless --type is given.

Formats: text, json ({"files", "findings": [{"id", "title", "severity",
"status", "evidence", "remediation", "file", "line"}, ...]}) and sarif
(SARIF 2.1.0).

Exit status: 0 no finding at or above --fail-on, 1 findings, 2 a file given
cannot be read, recognised or parsed.

Findings:
` + ruleList(),
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLint(cmd.OutOrStdout(), args, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.fileFormat, "type", "", "format of the files: "+strings.Join(lint.Formats(), ", ")+" (default: detect)")
	f.StringVar(&o.format, "format", "text", "output format: text, json or sarif")
	f.StringVar(&o.failOn, "fail-on", "low", "exit 1 on a finding of this severity or higher: info, low, medium, high or none")
	return cmd
}

func ruleList() string {
	var b strings.Builder
	for _, r := range lint.Rules() {
		fmt.Fprintf(&b, "  %-28s %-6s  %s\n", r.ID, r.Severity, r.Title)
	}
	return b.String()
}

func runLint(out io.Writer, files []string, o *lintOptions) error {
	if err := checkFormat(o.format); err != nil {
		return &exitError{2, err}
	}
	failOn, err := parseFailOn(o.failOn)
	if err != nil {
		return &exitError{2, err}
	}
	rep, err := lint.Files(files, lint.Options{Format: o.fileFormat, ClientIDBound: o.clientIDBound})
	if err != nil {
		return &exitError{2, err}
	}
	if err := writeReport(out, o.format, rep, func() { writeLintText(out, rep) },
		func() error { return writeLintSARIF(out, rep) }); err != nil {
		return err
	}
	failed := 0
	for _, f := range rep.Findings {
		if int(f.Severity) >= failOn {
			failed++
		}
	}
	if failed > 0 {
		return &exitError{1, fmt.Errorf("%d finding(s)", failed)}
	}
	return nil
}

func writeLintText(w io.Writer, rep lint.Report) {
	bySev := map[lint.Severity]int{}
	for _, f := range rep.Findings {
		bySev[f.Severity]++
		where := f.File
		if f.Line > 0 {
			where = fmt.Sprintf("%s:%d", f.File, f.Line)
		}
		fmt.Fprintf(w, "%s: %s %s: %s\n", where, f.Severity, f.ID, f.Evidence)
		fmt.Fprintf(w, "    fix: %s\n", f.Remediation)
	}
	files := strings.Join(rep.Files, ", ")
	if len(rep.Findings) == 0 {
		fmt.Fprintf(w, "%s: no findings\n", files)
		return
	}
	fmt.Fprintf(w, "%s: %d finding(s): %d high, %d medium, %d low\n", files, len(rep.Findings),
		bySev[lint.High], bySev[lint.Medium], bySev[lint.Low]+bySev[lint.Info])
}

func writeLintSARIF(w io.Writer, rep lint.Report) error {
	var rules []sarifRule
	for _, r := range lint.Rules() {
		rules = append(rules, sarifRule{ID: r.ID, Title: r.Title, Severity: r.Severity.String(), Remediation: r.Remediation})
	}
	var results []sarifResult
	for _, f := range rep.Findings {
		results = append(results, sarifResult{RuleID: f.ID, Severity: f.Severity.String(), Message: f.Title + ": " + f.Evidence, URI: f.File, Line: f.Line})
	}
	return writeSARIF(w, "lint", rules, results)
}

// aclLintFormat picks the lint format for "acl lint": a Mosquitto
// acl_file or a Casbin policy.
func aclLintFormat(mosq, csvForm bool, data []byte) (string, error) {
	switch {
	case mosq && csvForm:
		return "", errors.New("give at most one of --mosquitto and --casbin")
	case mosq:
		return "mosquitto-acl", nil
	case csvForm:
		return "casbin", nil
	case looksMosquitto(data):
		return "mosquitto-acl", nil
	}
	return "casbin", nil
}
