package scan

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqttsec/mqttsec/internal/severity"
)

// Errors returned by [Run] before any check runs.
var (
	// ErrTarget is returned for a target that is not an MQTT URL this
	// package can scan.
	ErrTarget = errors.New("scan: invalid target")
	// ErrUnreachable is returned when no TCP connection to the target can
	// be made: there is nothing to check.
	ErrUnreachable = errors.New("scan: target unreachable")
)

// Severity ranks a finding: info, low, medium, high. It is the same type
// in packages scan and lint, so reports of both compare alike.
type Severity = severity.Severity

// The severities, lowest first.
const (
	// Info is a fact worth knowing that is not a weakness by itself.
	Info = severity.Info
	// Low is a weakness that needs other conditions to be exploited.
	Low = severity.Low
	// Medium is a weakness that exposes data or availability in some
	// deployments.
	Medium = severity.Medium
	// High is a weakness that lets an outsider read, write or disrupt.
	High = severity.High
)

// ParseSeverity parses a severity name as [Severity.String] writes it.
func ParseSeverity(name string) (Severity, error) {
	s, err := severity.Parse(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", "scan", err)
	}
	return s, nil
}

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	// Fail means the weakness was found.
	Fail Status = "fail"
	// Pass means the broker resisted the probe.
	Pass Status = "pass"
	// Skip means the check could not run or could not decide; the
	// evidence says why.
	Skip Status = "skip"
)

// Finding is the result of one check. Its JSON form is the documented
// contract of `mqttsec scan --format json` (see the package documentation).
type Finding struct {
	// ID is the check's stable identifier, such as "anonymous-connect".
	ID string `json:"id"`
	// Title says what the check looks for.
	Title string `json:"title"`
	// Severity is the check's severity, whatever its status.
	Severity Severity `json:"severity"`
	// Status is fail, pass or skip.
	Status Status `json:"status"`
	// Evidence is what the scanner observed. It never contains a
	// password.
	Evidence string `json:"evidence"`
	// Remediation says how to fix a failure.
	Remediation string `json:"remediation"`
	// ElapsedMS is how long the check ran, in milliseconds.
	ElapsedMS int64 `json:"elapsed_ms"`
}

// Report is the result of [Run]: one finding per check, in the order the
// checks ran.
type Report struct {
	// Target is the URL scanned, as given to Run.
	Target string `json:"target"`
	// Broker is the broker's self-description read from
	// $SYS/broker/version, when it was readable.
	Broker string `json:"broker,omitempty"`
	// Started is when the scan started.
	Started time.Time `json:"started"`
	// ElapsedMS is how long the scan took, in milliseconds.
	ElapsedMS int64 `json:"elapsed_ms"`
	// Findings holds one entry per check.
	Findings []Finding `json:"findings"`
}

// Failed returns the failed findings of severity min or higher.
func (r Report) Failed(min Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Status == Fail && f.Severity >= min {
			out = append(out, f)
		}
	}
	return out
}

// Credentials are what a principal presents: a user name and password, a
// client certificate, both, or neither (anonymous).
type Credentials struct {
	// Username is sent in CONNECT when not empty.
	Username string
	// Password is sent in CONNECT when not nil. It never appears in a
	// finding.
	Password []byte
	// Certificate, when set, is presented as the TLS client certificate.
	Certificate *tls.Certificate
}

// anonymous reports whether c presents nothing.
func (c *Credentials) anonymous() bool {
	return c == nil || (c.Username == "" && c.Password == nil && c.Certificate == nil)
}

// describe names the principal for evidence: its user name, its
// certificate, or "anonymous".
func (c *Credentials) describe() string {
	switch {
	case c.anonymous():
		return "an anonymous client"
	case c.Username != "":
		return fmt.Sprintf("user %q", c.Username)
	case c.Certificate != nil && c.Certificate.Leaf != nil:
		return fmt.Sprintf("certificate %q", c.Certificate.Leaf.Subject.CommonName)
	}
	return "a client certificate"
}

// Defaults of [Options].
const (
	DefaultCheckTimeout       = 10 * time.Second
	DefaultDeliveryWait       = 2 * time.Second
	DefaultIdleWait           = 15 * time.Second
	DefaultOversizePayload    = 8 << 20
	DefaultMaxPacketSize      = 1 << 20
	DefaultCredentialInterval = 500 * time.Millisecond
	DefaultConnectAttempts    = 50
)

// Options configure [Run]. The zero value scans as an anonymous client with
// the defaults below; Options is a plain value and is not modified by Run.
type Options struct {
	// Principal is who the scan acts as for the checks that need a
	// connected client (subscriptions, publishes, takeover). The zero
	// value is an anonymous client.
	Principal Credentials
	// Second is a second principal, for the checks between principals
	// (retained-message poisoning, will-message ACL bypass, client-ID
	// takeover). Nil means anonymous clients play that part when the
	// broker admits them; otherwise those checks are skipped.
	Second *Credentials

	// TLS is the client configuration for mqtts targets: RootCAs (nil
	// means the system roots), ServerName (empty means the target's host)
	// and, loudly, InsecureSkipVerify. Its Certificates are ignored: give
	// client certificates in Credentials. Connections that send
	// credentials require a verified server certificate unless
	// InsecureSkipVerify is set; probes that send nothing secret (the TLS
	// checks, anonymous CONNECTs) do not verify, so that they run against
	// a broker whose certificate is not trusted.
	TLS *tls.Config

	// Intrusive enables the checks that may lock accounts or load the
	// broker: default-credentials and connect-rate.
	Intrusive bool
	// Checks, when not empty, lists the IDs of the checks to run; the
	// others are reported as skipped. Unknown IDs are an error.
	Checks []string

	// TopicPrefix is a topic prefix under which the principal may publish
	// and subscribe, such as "devices/alice/". The scan's own probe topics
	// are a random level below it; empty means a random top-level topic.
	// The checks that need a topic the principal owns are skipped when it
	// may not publish there.
	TopicPrefix string
	// PlaintextAddrs are the host:port addresses probed for a plaintext
	// MQTT listener when the target uses TLS. Nil means port 1883 of the
	// target's host; an empty non-nil slice probes nothing.
	PlaintextAddrs []string

	// CheckTimeout bounds each check. Zero means [DefaultCheckTimeout].
	CheckTimeout time.Duration
	// DeliveryWait is how long a check waits for a message that a secure
	// broker would not deliver. Zero means [DefaultDeliveryWait].
	DeliveryWait time.Duration
	// IdleWait is how long a socket that sends nothing may stay open
	// before idle-connection fails. The socket is opened when the scan
	// starts, so the wait overlaps the other checks. Zero means
	// [DefaultIdleWait].
	IdleWait time.Duration
	// OversizePayload is the payload size payload-oversized publishes.
	// Zero means [DefaultOversizePayload].
	OversizePayload int
	// MaxPacketSize bounds every packet the scanner reads: a broker
	// claiming a larger one is disconnected. Zero means
	// [DefaultMaxPacketSize].
	MaxPacketSize int

	// DefaultCredentials is the list default-credentials tries. Nil means
	// [DefaultCredentialList].
	DefaultCredentials []Credentials
	// CredentialInterval is the pause between two attempts of
	// default-credentials. Zero means [DefaultCredentialInterval].
	CredentialInterval time.Duration
	// ConnectAttempts bounds connect-rate: how many CONNECTs it sends.
	// Zero means [DefaultConnectAttempts].
	ConnectAttempts int

	// Progress, when set, is called after each check with its finding.
	Progress func(Finding)
}

func (o *Options) setDefaults() {
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.DeliveryWait <= 0 {
		o.DeliveryWait = DefaultDeliveryWait
	}
	if o.IdleWait <= 0 {
		o.IdleWait = DefaultIdleWait
	}
	if o.OversizePayload <= 0 {
		o.OversizePayload = DefaultOversizePayload
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = DefaultMaxPacketSize
	}
	if o.DefaultCredentials == nil {
		o.DefaultCredentials = DefaultCredentialList()
	}
	if o.CredentialInterval <= 0 {
		o.CredentialInterval = DefaultCredentialInterval
	}
	if o.ConnectAttempts <= 0 {
		o.ConnectAttempts = DefaultConnectAttempts
	}
}

// DefaultCredentialList returns the user name and password pairs
// default-credentials tries: defaults of brokers, images and tutorials.
func DefaultCredentialList() []Credentials {
	pairs := [][2]string{
		{"admin", "admin"}, {"admin", "password"}, {"admin", "public"},
		{"guest", "guest"}, {"mosquitto", "mosquitto"}, {"mqtt", "mqtt"},
		{"user", "user"}, {"test", "test"}, {"root", "root"},
		{"admin", "123456"}, {"hivemq", "hivemq"}, {"pi", "raspberry"},
	}
	out := make([]Credentials, len(pairs))
	for i, p := range pairs {
		out[i] = Credentials{Username: p[0], Password: []byte(p[1])}
	}
	return out
}

// target is a parsed scan target.
type target struct {
	raw  string
	host string // without port
	addr string // host:port
	tls  bool
}

// parseTarget accepts mqtt://, tcp:// (plaintext, port 1883 by default)
// and mqtts://, ssl://, tls:// (TLS, port 8883 by default).
func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrTarget, err)
	}
	t := target{raw: raw}
	port := ""
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp":
		port = "1883"
	case "mqtts", "ssl", "tls", "mqtt+ssl":
		t.tls, port = true, "8883"
	default:
		return target{}, fmt.Errorf("%w: %q: want mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", ErrTarget, raw)
	}
	if u.User != nil {
		return target{}, fmt.Errorf("%w: credentials in the URL: give them in the options", ErrTarget)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return target{}, fmt.Errorf("%w: %q: a broker URL has no path or query", ErrTarget, raw)
	}
	t.host = u.Hostname()
	if t.host == "" {
		return target{}, fmt.Errorf("%w: %q: no host", ErrTarget, raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return target{}, fmt.Errorf("%w: %q: bad port", ErrTarget, raw)
		}
		port = p
	}
	t.addr = net.JoinHostPort(t.host, port)
	return t, nil
}

// Run scans the broker at target, an mqtt:// or mqtts:// URL, one check at a
// time in the order of [Checks], each bounded by Options.CheckTimeout. Probe
// topics live under a random prefix; retained probe messages are removed
// and every connection is closed before Run returns.
//
// Run returns an error wrapping [ErrTarget] for an unusable target or
// options, and [ErrUnreachable] (with the report so far) when the target
// accepts no TCP connection. A cancelled ctx ends the scan: the remaining
// checks are reported as skipped and ctx.Err() is returned with the report.
func Run(ctx context.Context, target string, opts Options) (rep Report, err error) {
	t, err := parseTarget(target)
	if err != nil {
		return Report{Target: target}, err
	}
	opts.setDefaults()
	checks := Checks()
	selected := map[string]bool{}
	for _, id := range opts.Checks {
		if !slices.ContainsFunc(checks, func(c Check) bool { return c.ID == id }) {
			return Report{Target: target}, fmt.Errorf("%w: unknown check %q", ErrTarget, id)
		}
		selected[id] = true
	}
	s, err := newScanner(t, opts)
	if err != nil {
		return Report{Target: target}, err
	}
	rep = Report{Target: target, Started: time.Now()}
	defer func() { rep.ElapsedMS = time.Since(rep.Started).Milliseconds() }()

	// Reachability first: without a TCP connection, or a broker that
	// answers a CONNECT at all (with a CONNACK, a TLS alert or by closing),
	// nothing can be checked, and every check would wait for its deadline.
	if err := s.alive(ctx); err != nil {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		return rep, fmt.Errorf("%w: %s: %v", ErrUnreachable, t.addr, err)
	}
	if len(selected) == 0 || selected[idleConnection.ID] {
		s.idle = startIdleProbe(s.t.addr)
	}
	defer s.close()

	for _, c := range checks {
		f := Finding{ID: c.ID, Title: c.Title, Severity: c.Severity, Remediation: c.Remediation}
		start := time.Now()
		switch {
		case ctx.Err() != nil:
			f.Status, f.Evidence = Skip, "the scan was cancelled"
		case len(selected) > 0 && !selected[c.ID]:
			f.Status, f.Evidence = Skip, "not selected"
		case c.Intrusive && !opts.Intrusive:
			f.Status, f.Evidence = Skip, "intrusive check: run with the intrusive option (--intrusive)"
		default:
			f.Status, f.Evidence = s.runCheck(ctx, c)
		}
		f.ElapsedMS = time.Since(start).Milliseconds()
		rep.Findings = append(rep.Findings, f)
		if opts.Progress != nil {
			opts.Progress(f)
		}
	}
	rep.Broker = s.broker
	s.cleanup(ctx)
	return rep, ctx.Err()
}

// alive connects to the target and sends an anonymous MQTT 3.1.1 CONNECT:
// any answer will do, silence until Options.CheckTimeout will not.
func (s *scanner) alive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.CheckTimeout)
	defer cancel()
	nc, err := s.dial(ctx, nil)
	if err != nil {
		if isDialError(err) || ctx.Err() != nil {
			return err
		}
		return nil // a TLS refusal is an answer
	}
	c, _, err := connect3(ctx, nc, connOpts{clientID: s.clientID()}, s.opWait())
	if c != nil {
		_ = c.Close()
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("no answer to an MQTT CONNECT within %s", s.o.CheckTimeout)
	}
	return nil
}

// runCheck runs one check under its own deadline and turns a panic (a
// hostile broker's answer that a decoder did not expect) into a skip.
func (s *scanner) runCheck(ctx context.Context, c Check) (st Status, ev string) {
	timeout := s.o.CheckTimeout
	if c.wait != nil {
		timeout = max(timeout, c.wait(s))
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer s.closeConns()
	defer func() {
		if r := recover(); r != nil {
			st, ev = Skip, fmt.Sprintf("internal error: %v", r)
		}
	}()
	o := c.run(cctx, s)
	if o.status == Skip && o.evidence == "" && cctx.Err() != nil {
		o.evidence = fmt.Sprintf("timed out after %s", timeout)
	}
	return o.status, o.evidence
}
