package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mqttsec/mqttsec/scan"
)

// principalFlags are the credentials of one principal.
type principalFlags struct {
	username, passwordFile, cert, key string
}

// scanOptions are the flags of "mqttsec scan".
type scanOptions struct {
	first, second  principalFlags
	caFile         string
	serverName     string
	insecureSkip   bool
	topicPrefix    string
	plaintextAddrs []string
	noPlaintext    bool
	intrusive      bool
	checks         []string
	checkTimeout   time.Duration
	deliveryWait   time.Duration
	idleWait       time.Duration
	format         string
	failOn         string
}

func init() {
	rootCmd.AddCommand(newScanCmd())
}

func newScanCmd() *cobra.Command {
	o := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan URL",
		Short: "Check a live MQTT broker for security weaknesses",
		Long: `Check the broker at URL (mqtt://HOST[:PORT] or mqtts://HOST[:PORT]) from the
outside, one check at a time: TLS versions, ciphers and certificate, plaintext
listeners, anonymous and weak authentication, wildcard and $SYS access,
publishes outside the principal's topics, retained-message poisoning,
will-message ACL bypass, client-ID takeover, and limits.

The scan acts as the principal given by --username/--password-file and/or
--cert/--key (anonymous without them). The checks between principals need a
second one (--username2, ...); without it they use an anonymous client when
the broker admits one. Probe topics are under a random "mqttsec-scan-..."
level below --topic-prefix, and are cleaned up.

--intrusive adds the checks that may lock accounts or load the broker: a
short default-credential list (throttled, stopping at the first hit) and a
bounded burst of CONNECTs.

Formats: text (streamed), json ({"target", "findings": [{"id", "title",
"severity", "status", "evidence", "remediation"}, ...]}, one entry per check)
and sarif (SARIF 2.1.0, failed checks as results).

Exit status: 0 no failed check at or above --fail-on, 1 failed checks, 2
usage error or unreachable target.

Checks:
` + checkList(),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runScan(ctx, args[0], o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.first.username, "username", "", "user name of the principal")
	f.StringVar(&o.first.passwordFile, "password-file", "", "file holding the principal's password (first line)")
	f.StringVar(&o.first.cert, "cert", "", "client certificate of the principal (PEM)")
	f.StringVar(&o.first.key, "key", "", "private key of --cert (PEM)")
	f.StringVar(&o.second.username, "username2", "", "user name of a second principal")
	f.StringVar(&o.second.passwordFile, "password-file2", "", "file holding the second principal's password")
	f.StringVar(&o.second.cert, "cert2", "", "client certificate of the second principal")
	f.StringVar(&o.second.key, "key2", "", "private key of --cert2")
	f.StringVar(&o.caFile, "cafile", "", "CA bundle that signs the broker's certificate (default: the system roots)")
	f.StringVar(&o.serverName, "server-name", "", "name to verify in the broker's certificate (default: the URL's host)")
	f.BoolVar(&o.insecureSkip, "insecure-skip-verify", false, "send credentials even to a broker whose certificate does not verify")
	f.StringVar(&o.topicPrefix, "topic-prefix", "", `topic prefix the principal may use, e.g. "devices/alice/"`)
	f.StringSliceVar(&o.plaintextAddrs, "plaintext-addr", nil, "HOST:PORT to probe for plaintext MQTT when the URL is mqtts (default: port 1883 of the host)")
	f.BoolVar(&o.noPlaintext, "no-plaintext-probe", false, "probe no other port for plaintext MQTT")
	f.BoolVar(&o.intrusive, "intrusive", false, "also run default-credentials and connect-rate")
	f.StringSliceVar(&o.checks, "checks", nil, "run only these check IDs (comma-separated)")
	f.DurationVar(&o.checkTimeout, "check-timeout", scan.DefaultCheckTimeout, "time limit of each check")
	f.DurationVar(&o.deliveryWait, "delivery-wait", scan.DefaultDeliveryWait, "how long to wait for a message that should not arrive")
	f.DurationVar(&o.idleWait, "idle-wait", scan.DefaultIdleWait, "how long a socket without CONNECT may stay open")
	f.StringVar(&o.format, "format", "text", "output format: text, json or sarif")
	f.StringVar(&o.failOn, "fail-on", "low", "exit 1 when a check of this severity or higher fails: info, low, medium, high or none")
	return cmd
}

func checkList() string {
	var b strings.Builder
	for _, c := range scan.Checks() {
		extra := ""
		if c.Intrusive {
			extra = " (--intrusive)"
		}
		fmt.Fprintf(&b, "  %-24s %-6s  %s%s\n", c.ID, c.Severity, c.Title, extra)
	}
	return b.String()
}

// readSecret reads a password from the first line of a file.
func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

func (p principalFlags) credentials(which string) (scan.Credentials, error) {
	c := scan.Credentials{Username: p.username}
	if p.passwordFile != "" {
		pw, err := readSecret(p.passwordFile)
		if err != nil {
			return c, fmt.Errorf("--password-file%s: %w", which, err)
		}
		c.Password = pw
	}
	if (p.cert == "") != (p.key == "") {
		return c, fmt.Errorf("--cert%s and --key%s go together", which, which)
	}
	if p.cert != "" {
		cert, err := tls.LoadX509KeyPair(p.cert, p.key)
		if err != nil {
			return c, fmt.Errorf("--cert%s: %w", which, err)
		}
		c.Certificate = &cert
	}
	return c, nil
}

func (p principalFlags) empty() bool { return p == principalFlags{} }

// scanConfig turns the flags into scan.Options.
func scanConfig(o *scanOptions) (scan.Options, error) {
	opts := scan.Options{
		TopicPrefix:    o.topicPrefix,
		Intrusive:      o.intrusive,
		Checks:         o.checks,
		CheckTimeout:   o.checkTimeout,
		DeliveryWait:   o.deliveryWait,
		IdleWait:       o.idleWait,
		PlaintextAddrs: o.plaintextAddrs,
	}
	if o.noPlaintext {
		opts.PlaintextAddrs = []string{}
	}
	var err error
	if opts.Principal, err = o.first.credentials(""); err != nil {
		return opts, err
	}
	if !o.second.empty() {
		sec, err := o.second.credentials("2")
		if err != nil {
			return opts, err
		}
		opts.Second = &sec
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.serverName, InsecureSkipVerify: o.insecureSkip} // #nosec G402 -- an explicit, loudly named flag
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return opts, fmt.Errorf("--cafile: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("--cafile %s: no PEM certificate", o.caFile)
		}
	}
	opts.TLS = tc
	return opts, nil
}

func runScan(ctx context.Context, target string, o *scanOptions, out io.Writer) error {
	if err := checkFormat(o.format); err != nil {
		return &exitError{2, err}
	}
	failOn, err := parseFailOn(o.failOn)
	if err != nil {
		return &exitError{2, err}
	}
	opts, err := scanConfig(o)
	if err != nil {
		return &exitError{2, err}
	}
	if o.format == "text" {
		fmt.Fprintf(out, "mqttsec scan %s\n", target)
		opts.Progress = func(f scan.Finding) { writeScanFinding(out, f) }
	}
	rep, err := scan.Run(ctx, target, opts)
	if err != nil && (errors.Is(err, scan.ErrTarget) || errors.Is(err, scan.ErrUnreachable)) {
		return &exitError{2, err}
	}
	if werr := writeReport(out, o.format, rep, func() { writeScanSummary(out, rep) },
		func() error { return writeScanSARIF(out, rep) }); werr != nil {
		return werr
	}
	if err != nil { // cancelled: the report is partial
		return &exitError{2, err}
	}
	failed := 0
	for _, f := range rep.Findings {
		if f.Status == scan.Fail && int(f.Severity) >= failOn {
			failed++
		}
	}
	if failed > 0 {
		return &exitError{1, fmt.Errorf("%d check(s) failed", failed)}
	}
	return nil
}

func writeScanFinding(w io.Writer, f scan.Finding) {
	fmt.Fprintf(w, "%-4s  %-6s  %-24s %s\n", strings.ToUpper(string(f.Status)), f.Severity, f.ID, f.Title)
	fmt.Fprintf(w, "      %s\n", f.Evidence)
	if f.Status == scan.Fail {
		fmt.Fprintf(w, "      fix: %s\n", f.Remediation)
	}
}

func writeScanSummary(w io.Writer, rep scan.Report) {
	count := map[scan.Status]int{}
	bySev := map[scan.Severity]int{}
	for _, f := range rep.Findings {
		count[f.Status]++
		if f.Status == scan.Fail {
			bySev[f.Severity]++
		}
	}
	broker := ""
	if rep.Broker != "" {
		broker = fmt.Sprintf(" (%s)", rep.Broker)
	}
	fmt.Fprintf(w, "%s%s: %d failed (%d high, %d medium, %d low), %d passed, %d skipped in %s\n",
		rep.Target, broker, count[scan.Fail], bySev[scan.High], bySev[scan.Medium], bySev[scan.Low]+bySev[scan.Info],
		count[scan.Pass], count[scan.Skip], (time.Duration(rep.ElapsedMS) * time.Millisecond).Round(100*time.Millisecond))
}

func writeScanSARIF(w io.Writer, rep scan.Report) error {
	var rules []sarifRule
	for _, c := range scan.Checks() {
		rules = append(rules, sarifRule{ID: c.ID, Title: c.Title, Severity: c.Severity.String(), Remediation: c.Remediation})
	}
	var results []sarifResult
	for _, f := range rep.Findings {
		if f.Status == scan.Fail {
			results = append(results, sarifResult{RuleID: f.ID, Severity: f.Severity.String(), Message: f.Title + ": " + f.Evidence, URI: rep.Target})
		}
	}
	return writeSARIF(w, "scan", rules, results)
}
