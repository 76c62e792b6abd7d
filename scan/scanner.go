package scan

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// scanner is the state of one Run: the target, the options, the probe
// namespace, facts learnt by earlier checks and what must be cleaned up.
// It is used by one goroutine.
type scanner struct {
	t target
	o Options

	id   string // random, in client IDs and topics
	seq  int
	root string // "mqttsec-scan-<id>": a top-level topic nobody owns
	own  string // TopicPrefix + root: where the principal may publish

	verified *tls.Config // for connections that send credentials
	probe    *tls.Config // for probes that send nothing secret

	conns    []io.Closer // closed at the end of each check
	retained []retained  // removed at the end of the scan
	idle     *idleProbe

	// Facts learnt by earlier checks.
	broker      string   // $SYS/broker/version
	anonymousOK bool     // an anonymous client was admitted
	anyCreds    bool     // a made-up user name and password were admitted
	v3Acks      int      // MQTT 3.1.1 CONNACKs received
	badV3       []string // return codes MQTT 3.1.1 does not define, and for what
}

// retained is a retained probe message to remove, and who may remove it.
type retained struct {
	topic string
	by    *Credentials
}

// errUnverified is returned when a connection that would send credentials
// meets a server certificate that does not verify.
var errUnverified = errors.New("the server certificate does not verify; credentials were not sent (give the CA, or InsecureSkipVerify)")

func newScanner(t target, o Options) (*scanner, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	s := &scanner{t: t, o: o, id: hex.EncodeToString(b[:])}
	s.root = "mqttsec-scan-" + s.id
	s.own = o.TopicPrefix + s.root
	if o.TopicPrefix != "" && o.TopicPrefix[len(o.TopicPrefix)-1] != '/' {
		s.own = o.TopicPrefix + "/" + s.root
	}
	if t.tls {
		base := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLS != nil {
			base = o.TLS.Clone()
		}
		base.Certificates, base.GetClientCertificate = nil, nil
		if base.ServerName == "" {
			base.ServerName = t.host
		}
		if base.MinVersion == 0 {
			base.MinVersion = tls.VersionTLS12
		}
		s.verified = base
		s.probe = &tls.Config{InsecureSkipVerify: true, ServerName: base.ServerName, MinVersion: tls.VersionTLS12} // #nosec G402 -- sends nothing secret
	}
	return s, nil
}

// clientID returns a fresh client ID in the scan's namespace.
func (s *scanner) clientID() string {
	s.seq++
	return "mqttsec-" + s.id[:8] + "-" + strconv.Itoa(s.seq)
}

// topic returns a probe topic the principal owns.
func (s *scanner) topic(name string) string { return s.own + "/" + name }

// dial opens a connection for cred: TCP, then TLS for mqtts targets, with
// the inbound packet limit. Connections for credentials require a verified
// server unless the options say otherwise.
func (s *scanner) dial(ctx context.Context, cred *Credentials) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.t.addr)
	if err != nil {
		return nil, &dialError{err}
	}
	if s.t.tls {
		cfg := s.probe
		if !cred.anonymous() {
			cfg = s.verified.Clone()
			if cred.Certificate != nil {
				cfg.Certificates = []tls.Certificate{*cred.Certificate}
			}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			var ve *tls.CertificateVerificationError
			if errors.As(err, &ve) {
				return nil, fmt.Errorf("%w: %v", errUnverified, ve.Err)
			}
			return nil, err
		}
		nc = tc
	}
	return newLimitConn(nc, s.o.MaxPacketSize), nil
}

// connOptsFor returns the CONNECT fields for cred with a fresh client ID.
func (s *scanner) connOptsFor(cred *Credentials) connOpts {
	o := connOpts{clientID: s.clientID()}
	if cred != nil {
		if cred.Username != "" {
			o.user, o.userFlag = cred.Username, true
		}
		if cred.Password != nil {
			o.pass, o.passFlag = cred.Password, true
		}
	}
	return o
}

// v5 connects cred over MQTT 5 with o. The connection is closed when the
// check ends.
func (s *scanner) v5(ctx context.Context, cred *Credentials, o connOpts) (*conn5, *paho.Connack, error) {
	nc, err := s.dial(ctx, cred)
	if err != nil {
		return nil, nil, err
	}
	c, ack, err := s.connect5(ctx, nc, o)
	if err != nil {
		return nil, ack, err
	}
	s.conns = append(s.conns, c)
	return c, ack, nil
}

// v3 connects cred over MQTT 3.1.1 with o and returns the CONNACK return
// code. The connection is closed when the check ends.
func (s *scanner) v3(ctx context.Context, cred *Credentials, o connOpts) (*conn3, byte, error) {
	nc, err := s.dial(ctx, cred)
	if err != nil {
		return nil, 0, err
	}
	c, code, err := s.connect3(ctx, nc, o)
	if err != nil || code != 0 {
		return nil, code, err
	}
	s.conns = append(s.conns, c)
	return c, 0, nil
}

// opWait bounds one request and its answer within a check.
func (s *scanner) opWait() time.Duration { return max(s.o.DeliveryWait, s.o.CheckTimeout/3) }

// connect5 runs an MQTT 5 CONNECT on nc.
func (s *scanner) connect5(ctx context.Context, nc net.Conn, o connOpts) (*conn5, *paho.Connack, error) {
	return connect5(ctx, nc, o, s.o.MaxPacketSize, s.opWait())
}

// connect3 runs an MQTT 3.1.1 CONNECT on nc and records return codes that
// MQTT 3.1.1 does not define (for v3-return-code).
func (s *scanner) connect3(ctx context.Context, nc net.Conn, o connOpts) (*conn3, byte, error) {
	c, code, err := connect3(ctx, nc, o, s.opWait())
	if err == nil {
		s.v3Acks++
		if code > 5 {
			s.badV3 = append(s.badV3, fmt.Sprintf("%d for %s", code, o.summary()))
		}
	}
	return c, code, err
}

// principal5 connects the principal over MQTT 5, or explains why it
// cannot.
func (s *scanner) principal5(ctx context.Context) (*conn5, string) {
	p := &s.o.Principal
	c, ack, err := s.v5(ctx, p, s.connOptsFor(p))
	if err != nil {
		return nil, fmt.Sprintf("%s cannot connect over MQTT 5: %s", p.describe(), connackText5(ack, err))
	}
	return c, ""
}

// principal3 connects the principal over MQTT 3.1.1, or explains why it
// cannot.
func (s *scanner) principal3(ctx context.Context) (*conn3, string) {
	p := &s.o.Principal
	c, code, err := s.v3(ctx, p, s.connOptsFor(p))
	if err != nil || code != 0 {
		return nil, fmt.Sprintf("%s cannot connect over MQTT 3.1.1: %s", p.describe(), connackText3(code, err))
	}
	return c, ""
}

// second returns the second principal: the one given, or an anonymous
// client when the broker admits them and the principal is not anonymous
// (anonymous clients are then all one principal). It returns nil when there
// is none.
func (s *scanner) second() *Credentials {
	if s.o.Second != nil {
		return s.o.Second
	}
	if s.anonymousOK && !s.o.Principal.anonymous() {
		return &Credentials{}
	}
	return nil
}

func connackText5(ack *paho.Connack, err error) string {
	if ack != nil {
		return fmt.Sprintf("CONNACK 0x%02X", ack.ReasonCode)
	}
	return errText(err)
}

func connackText3(code byte, err error) string {
	if err != nil {
		return errText(err)
	}
	return fmt.Sprintf("CONNACK return code %d%s", code, v3Invalid(code))
}

// errText shortens an error for evidence.
func errText(err error) string {
	if err == nil {
		return "no error"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, errClosed) {
		return "connection closed by the broker"
	}
	// Errors may quote what the broker sent (a reason string).
	return printable(err.Error(), 200)
}

// closeConns closes the connections of the check that ended.
func (s *scanner) closeConns() {
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// keepRetained records a retained probe message for removal.
func (s *scanner) keepRetained(topic string, by *Credentials) {
	s.retained = append(s.retained, retained{topic: topic, by: by})
}

// cleanup removes the retained probe messages: each is replaced by an
// empty retained message from the principal that may write there. It runs
// with its own deadline even when ctx was cancelled.
func (s *scanner) cleanup(ctx context.Context) {
	if len(s.retained) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.CheckTimeout)
	defer cancel()
	defer s.closeConns()
	for _, r := range s.retained {
		c, _, err := s.v5(cctx, r.by, s.connOptsFor(r.by))
		if err != nil {
			continue
		}
		_, _ = c.publish(cctx, r.topic, nil, true)
	}
	s.retained = nil
}

// close ends everything the scan still holds.
func (s *scanner) close() {
	s.closeConns()
	if s.idle != nil {
		s.idle.stop()
	}
}

// idleProbe is a socket opened at the start of the scan that never sends
// anything: idle-connection reports whether the broker closed it.
type idleProbe struct {
	opened time.Time
	nc     net.Conn
	err    error // dial error

	mu       sync.Mutex
	closedAt time.Time
	gotData  bool
	ended    chan struct{}
}

func startIdleProbe(addr string) *idleProbe {
	p := &idleProbe{opened: time.Now(), ended: make(chan struct{})}
	p.nc, p.err = net.DialTimeout("tcp", addr, DefaultCheckTimeout)
	if p.err != nil {
		close(p.ended)
		return p
	}
	go func() {
		defer close(p.ended)
		var b [64]byte
		n, _ := p.nc.Read(b[:])
		p.mu.Lock()
		p.closedAt, p.gotData = time.Now(), n > 0
		p.mu.Unlock()
	}()
	return p
}

func (p *idleProbe) stop() {
	if p.nc != nil {
		_ = p.nc.Close()
	}
	<-p.ended
}
