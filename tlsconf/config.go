package tlsconf

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/mqttsec/mqttsec"
	"go.yaml.in/yaml/v3"
)

// ClientAuth is the server's policy for client certificates.
type ClientAuth string

// The client-certificate policies.
const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthVerifyIfGiven accepts clients without a certificate, and
	// verifies (CA, CRL, names, pins) the certificate of those that send one.
	ClientAuthVerifyIfGiven ClientAuth = "verify-if-given"
	// ClientAuthRequire refuses clients without a valid certificate.
	ClientAuthRequire ClientAuth = "require"
)

// Watch modes for a [Reloader].
const (
	// WatchAuto (the zero value) watches the files' folders with fsnotify
	// and also polls, so that a missed event (network file systems, some
	// containers) is caught by the next poll.
	WatchAuto = ""
	// WatchPoll only polls.
	WatchPoll = "poll"
)

// Defaults applied to zero fields.
const (
	DefaultExpiryWarning = 30 * 24 * time.Hour
	DefaultPollInterval  = 10 * time.Second
)

// Config describes the TLS side of a broker listener, a client or a bridge.
// It is loaded from YAML (see [ParseConfig]) or filled in code; the zero
// value of every field is a secure default. [Config.Server] and
// [Config.Client] build a *tls.Config from it once; [NewReloader] builds
// one whose files are re-read when they change.
//
// A Config is a plain value; it is not modified by this package. The
// functions it holds (Events, Now, VerifyPeer) must be safe for concurrent
// use: they are called from handshakes.
type Config struct {
	// CertFile and KeyFile are the PEM certificate chain (leaf first) and
	// its private key. Required for a server; optional for a client, which
	// then presents no certificate.
	CertFile string `yaml:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty"`

	// CAFile is a PEM bundle. For a server it holds the CAs that sign
	// client certificates (mTLS); for a client the roots that sign the
	// server's certificate. Empty means no client certificates for a
	// server, and the system roots for a client.
	CAFile string `yaml:"ca_file,omitempty"`

	// CRLFiles are certificate revocation lists (PEM or DER). Each must be
	// signed by a certificate of CAFile. A peer whose chain contains a
	// listed certificate is refused, on resumed sessions too.
	CRLFiles []string `yaml:"crl_files,omitempty"`

	// ClientAuth is the server's client-certificate policy. Empty means
	// "require" when CAFile is set and "none" otherwise. Setting
	// "verify-if-given" or "require" without CAFile is an error. Ignored by
	// Client.
	ClientAuth ClientAuth `yaml:"client_auth,omitempty"`

	// MinVersion is the lowest TLS version: "1.2" (the default) or "1.3".
	// "1.1" is accepted only together with InsecureAllowTLS11.
	MinVersion string `yaml:"min_version,omitempty"`

	// InsecureAllowTLS11 permits MinVersion "1.1", and with it CBC cipher
	// suites, for devices that cannot do better. TLS 1.1 is deprecated
	// (RFC 8996); leave this false.
	InsecureAllowTLS11 bool `yaml:"insecure_allow_tls11,omitempty"`

	// ServerName is the name a client verifies in the server's
	// certificate. Empty means the host of the address dialed (as
	// tls.Dial does). Server-name verification cannot be switched off.
	ServerName string `yaml:"server_name,omitempty"`

	// ALPN lists the application protocols offered, most preferred first.
	// Empty means ["mqtt"]. A server also accepts clients that offer no
	// ALPN at all (mosquitto_pub, most devices).
	ALPN []string `yaml:"alpn,omitempty"`

	// PinnedSPKI lists SHA-256 hashes of SubjectPublicKeyInfo, as
	// "sha256/BASE64" (the form [SPKIPin] returns), plain standard base64,
	// or hex. When set, the peer's verified chain must contain a public key
	// with one of these hashes: a client or bridge pins its broker, a
	// server pins its client devices (like AllowedNames, not with
	// ClientAuth "none").
	PinnedSPKI []string `yaml:"pinned_spki,omitempty"`

	// AllowedNames, when set, are the only peer names accepted: the peer
	// certificate's subject common name or one of its DNS, email, URI or IP
	// names must equal one of them. Checked on resumed sessions too. On a
	// server it applies to the client certificates received, so it needs
	// ClientAuth "require" (with "verify-if-given", clients without a
	// certificate are not checked) and is an error with "none".
	AllowedNames []string `yaml:"allowed_names,omitempty"`

	// ExpiryWarning is how long before notAfter a loaded certificate is
	// reported through Events (as an [mqttsec.EventWarning] wrapping
	// [ErrExpiresSoon]). Zero means 30 days; negative disables warnings.
	ExpiryWarning time.Duration `yaml:"expiry_warning,omitempty"`

	// DisableSessionTickets turns off session resumption with tickets.
	// Tickets are on by default: their keys are rotated automatically, and
	// every resumed session goes through the same revocation, name and pin
	// checks as a full handshake.
	DisableSessionTickets bool `yaml:"disable_session_tickets,omitempty"`

	// Watch selects how a [Reloader] notices file changes: "" (fsnotify
	// plus polling) or "poll".
	Watch string `yaml:"watch,omitempty"`

	// PollInterval is how often a [Reloader] compares file contents. Zero
	// means 10 seconds.
	PollInterval time.Duration `yaml:"poll_interval,omitempty"`

	// Events receives what a [Reloader] does, as every watcher of this
	// module reports it, with Source "tls" ([EventSource]): an
	// [mqttsec.EventReload] for each file whose new content was loaded
	// (File names it), an [mqttsec.EventReloadFailed] with the error and
	// the file that failed when a reload keeps the previous material,
	// expiry and stale-CRL warnings ([mqttsec.EventWarning]), watch errors
	// ([mqttsec.EventError]), and the handshakes VerifyConnection refuses
	// ([mqttsec.EventConnectDenied]). Give the [mqttsec.Guard] (an
	// EventSink): after a reload it revalidates live sessions, so a client
	// whose certificate a new CRL revokes is disconnected (see
	// [Reloader.VerifyClientCertificate]). Nil means mqttsec.SlogSink(nil):
	// a failed reload is never silent.
	Events mqttsec.EventSink `yaml:"-"`

	// Now is the clock used for certificate validity. Nil means time.Now.
	Now func() time.Time `yaml:"-"`

	// VerifyPeer, when set, is called last in VerifyConnection for every
	// handshake, resumed ones included; a non-nil error aborts it.
	VerifyPeer func(cs tls.ConnectionState) error `yaml:"-"`
}

// ParseConfig decodes a YAML document into a Config. Unknown keys are
// errors, and so is any value [Config.Validate] refuses. File contents are
// not read.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate checks the fields of c without reading any file.
func (c Config) Validate() error {
	if _, err := c.minVersion(); err != nil {
		return err
	}
	switch c.ClientAuth {
	case "", ClientAuthNone:
	case ClientAuthVerifyIfGiven, ClientAuthRequire:
		if c.CAFile == "" {
			return fmt.Errorf("%w: client_auth %q needs ca_file", ErrConfig, c.ClientAuth)
		}
	default:
		return fmt.Errorf("%w: client_auth %q: want none, verify-if-given or require", ErrConfig, c.ClientAuth)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%w: cert_file and key_file go together", ErrConfig)
	}
	if _, err := parsePins(c.PinnedSPKI); err != nil {
		return err
	}
	for _, p := range c.ALPN {
		if p == "" || len(p) > 255 {
			return fmt.Errorf("%w: alpn protocol %q", ErrConfig, p)
		}
	}
	for _, f := range c.CRLFiles {
		if f == "" {
			return fmt.Errorf("%w: empty crl_files entry", ErrConfig)
		}
	}
	if len(c.CRLFiles) > 0 && c.CAFile == "" {
		return fmt.Errorf("%w: crl_files need ca_file (the CRL issuer)", ErrConfig)
	}
	switch c.Watch {
	case WatchAuto, WatchPoll:
	default:
		return fmt.Errorf("%w: watch %q: want \"\" or \"poll\"", ErrConfig, c.Watch)
	}
	if c.PollInterval < 0 {
		return fmt.Errorf("%w: negative poll_interval", ErrConfig)
	}
	return nil
}

func (c *Config) minVersion() (uint16, error) {
	switch c.MinVersion {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	case "1.1":
		if c.InsecureAllowTLS11 {
			return tls.VersionTLS11, nil
		}
		return 0, fmt.Errorf("%w: min_version 1.1 needs insecure_allow_tls11", ErrConfig)
	}
	return 0, fmt.Errorf("%w: min_version %q: want 1.2 or 1.3", ErrConfig, c.MinVersion)
}

func (c *Config) clientAuth() tls.ClientAuthType {
	switch c.ClientAuth {
	case ClientAuthVerifyIfGiven:
		return tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		return tls.RequireAndVerifyClientCert
	case ClientAuthNone:
		return tls.NoClientCert
	}
	if c.CAFile != "" {
		return tls.RequireAndVerifyClientCert
	}
	return tls.NoClientCert
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Config) events() mqttsec.EventSink {
	if c.Events != nil {
		return c.Events
	}
	return mqttsec.SlogSink(nil)
}

func (c *Config) expiryWarning() time.Duration {
	if c.ExpiryWarning == 0 {
		return DefaultExpiryWarning
	}
	return c.ExpiryWarning
}

func (c *Config) pollInterval() time.Duration {
	if c.PollInterval == 0 {
		return DefaultPollInterval
	}
	return c.PollInterval
}

func (c *Config) alpn() []string {
	if len(c.ALPN) == 0 {
		return []string{"mqtt"}
	}
	return append([]string(nil), c.ALPN...)
}

// cipherSuites are the TLS 1.2 suites: ECDHE key exchange and AEAD only.
// TLS 1.3 suites are not configurable in crypto/tls and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// legacySuites are added only with InsecureAllowTLS11: TLS 1.1 has no
// AEAD suite.
var legacySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// curves are the key-exchange groups: the post-quantum hybrid first, then
// X25519, P-256 and P-384.
var curves = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}

// CipherSuites returns the TLS 1.2 cipher suites this package enables
// (ECDHE with AES-GCM or ChaCha20-Poly1305).
func CipherSuites() []uint16 { return append([]uint16(nil), cipherSuites...) }

// base returns the settings shared by servers and clients.
func (c *Config) base() (*tls.Config, error) {
	mv, err := c.minVersion()
	if err != nil {
		return nil, err
	}
	suites := CipherSuites()
	if mv < tls.VersionTLS12 {
		suites = append(suites, legacySuites...)
	}
	return &tls.Config{
		MinVersion:             mv,
		CipherSuites:           suites,
		CurvePreferences:       append([]tls.CurveID(nil), curves...),
		NextProtos:             c.alpn(),
		SessionTicketsDisabled: c.DisableSessionTickets,
		Time:                   c.Now,
	}, nil
}

// SPKIPin returns the pin of a DER SubjectPublicKeyInfo (the
// RawSubjectPublicKeyInfo of an [x509.Certificate]) in the form
// "sha256/BASE64" that Config.PinnedSPKI accepts.
func SPKIPin(spki []byte) string {
	h := sha256.Sum256(spki)
	return "sha256/" + base64.StdEncoding.EncodeToString(h[:])
}

func parsePins(pins []string) (map[[32]byte]struct{}, error) {
	if len(pins) == 0 {
		return nil, nil
	}
	out := make(map[[32]byte]struct{}, len(pins))
	for _, p := range pins {
		s := strings.TrimPrefix(strings.TrimSpace(p), "sha256/")
		var b []byte
		var err error
		switch len(s) {
		case 64:
			b, err = hex.DecodeString(s)
		case 44:
			b, err = base64.StdEncoding.DecodeString(s)
		default:
			err = errors.New("bad length")
		}
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: pinned_spki %q: want sha256/BASE64 or 64 hex digits", ErrConfig, p)
		}
		out[[32]byte(b)] = struct{}{}
	}
	return out, nil
}
