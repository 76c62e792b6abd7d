package tlsconf

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/mqttsec/mqttsec"
)

// debounce is how long a Reloader waits after a file event before it
// reads the files: writing a certificate and then its key is two events.
const debounce = 100 * time.Millisecond

// Reloader holds the certificate, key, CA bundle and revocation lists of a
// [Config] and re-reads them when they change. The *tls.Config values it
// returns pick up every successful reload for the next handshake; a
// reload that fails (a missing file, a key that does not match, an expired
// certificate) keeps the previous material and is reported through
// Config.Events. Handshakes in progress are never interrupted.
//
// A Reloader is safe for concurrent use. [NewReloader] starts a goroutine
// that watches the files: call Close to stop it.
type Reloader struct {
	cfg  Config
	tmpl *tls.Config
	cur  atomic.Pointer[material]

	mu     sync.Mutex                 // serializes reloads
	badSum [32]byte                   // the fingerprint of the last failure already reported
	warned map[*x509.Certificate]bool // expiry warnings already reported for the current material

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
	watcher   *fsnotify.Watcher
}

// NewReloader validates c, loads and checks its files, and starts watching
// them (fsnotify on their folders and polling every c.PollInterval, or
// polling only with Watch "poll"). Expiry warnings of the first load go
// to c.Events and are returned by [Reloader.Warnings].
func NewReloader(c Config) (*Reloader, error) {
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	r.done = make(chan struct{})
	if c.Watch == WatchAuto {
		// Without fsnotify (no inotify instances left, an unsupported file
		// system) polling alone keeps working.
		if w, err := fsnotify.NewWatcher(); err == nil {
			r.watcher = w
			for _, dir := range r.dirs() {
				if err := w.Add(dir); err != nil {
					r.event(mqttsec.EventError, dir, fmt.Errorf("tlsconf: watch %s: %w (polling instead)", dir, err))
				}
			}
		} else {
			r.event(mqttsec.EventError, "", fmt.Errorf("tlsconf: fsnotify: %w (polling instead)", err))
		}
	}
	r.wg.Add(1)
	go r.run()
	return r, nil
}

func newReloader(c Config) (*Reloader, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.CRLFiles = append([]string(nil), c.CRLFiles...)
	c.ALPN = append([]string(nil), c.ALPN...)
	c.PinnedSPKI = append([]string(nil), c.PinnedSPKI...)
	c.AllowedNames = append([]string(nil), c.AllowedNames...)
	tmpl, err := c.base()
	if err != nil {
		return nil, err
	}
	r := &Reloader{cfg: c, tmpl: tmpl}
	f, err := readFiles(&r.cfg)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: %w", err)
	}
	m, err := r.build(f)
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.report(m)
	return r, nil
}

// Close stops watching. The *tls.Config values keep serving the last
// material. Close is idempotent and returns nil.
func (r *Reloader) Close() error {
	r.closeOnce.Do(func() {
		if r.done == nil {
			return
		}
		close(r.done)
		r.wg.Wait()
		if r.watcher != nil {
			_ = r.watcher.Close()
		}
	})
	return nil
}

// Warnings returns the warnings of the current material: certificates that
// expire within Config.ExpiryWarning of now ([ErrExpiresSoon]) and
// revocation lists past their next update ([ErrCRL]). A watching Reloader
// also re-checks expiry at every poll and reports each certificate that
// enters the window once through Config.Events.
func (r *Reloader) Warnings() []error {
	m := r.cur.Load()
	return append(append([]error(nil), m.warnings...), m.expiring(r.cfg.now(), r.cfg.expiryWarning())...)
}

// Reload re-reads the files now (on SIGHUP, say) and returns the error
// that kept the previous material, if any. Unchanged files are not parsed
// again.
func (r *Reloader) Reload() error { return r.reload(true) }

func (r *Reloader) reload(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, err := readFiles(&r.cfg)
	if err != nil {
		err = fmt.Errorf("tlsconf: reload: %w", err)
		r.fail(sha256.Sum256([]byte(err.Error())), err, force)
		return err
	}
	old := r.cur.Load()
	if f.sum == old.sum {
		return nil
	}
	m, err := r.build(f)
	if err != nil {
		err = fmt.Errorf("tlsconf: reload: %w", err)
		r.fail(f.sum, err, force)
		return err
	}
	r.cur.Store(m)
	r.badSum = [32]byte{}
	for _, name := range changedFiles(old.each, m.each) {
		r.event(mqttsec.EventReload, name, nil)
	}
	r.report(m)
	return nil
}

// changedFiles returns the names of the files of now whose content differs
// from before.
func changedFiles(before, now []fileSum) []string {
	var out []string
	for i, f := range now {
		if i >= len(before) || before[i] != f {
			out = append(out, f.name)
		}
	}
	return out
}

// recheckExpiry reports certificates of the current material that entered
// the expiry window since they were loaded.
func (r *Reloader) recheckExpiry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnExpiring(r.cur.Load())
}

// warnExpiring reports each certificate of m within the expiry window
// once. r.mu must be held (or r not yet shared).
func (r *Reloader) warnExpiring(m *material) {
	window := r.cfg.expiryWarning()
	if window < 0 {
		return
	}
	now := r.cfg.now()
	for _, fc := range m.certs {
		if r.warned[fc.cert] {
			continue
		}
		if w := expiryWarning(fc.file, fc.cert, now, window); w != nil {
			r.warned[fc.cert] = true
			r.event(mqttsec.EventWarning, fc.file, w)
		}
	}
}

// fail reports err unless the same failure was already reported by a
// watch (a poll every few seconds would repeat it).
func (r *Reloader) fail(sum [32]byte, err error, force bool) {
	if !force && sum == r.badSum {
		return
	}
	r.badSum = sum
	r.event(mqttsec.EventReloadFailed, fileOf(err), err)
}

// report announces the warnings of newly loaded material.
func (r *Reloader) report(m *material) {
	for _, w := range m.warnings {
		r.event(mqttsec.EventWarning, fileOf(w), w)
	}
	r.warned = make(map[*x509.Certificate]bool)
	r.warnExpiring(m)
}

// EventSource is the Source of the events this package reports.
const EventSource = "tls"

func (r *Reloader) event(kind mqttsec.EventKind, file string, err error) {
	r.cfg.events().Event(mqttsec.Event{Time: r.cfg.now(), Kind: kind, Source: EventSource, File: file, Err: err})
}

func (r *Reloader) build(f *files) (*material, error) {
	m, err := build(&r.cfg, f)
	if err != nil {
		return nil, err
	}
	if m.cert != nil {
		s := r.tmpl.Clone()
		s.Certificates = []tls.Certificate{*m.cert}
		s.ClientAuth = r.cfg.clientAuth()
		s.ClientCAs = m.pool
		s.VerifyConnection = func(cs tls.ConnectionState) error { return r.verify(m, cs, true) }
		m.server = s
	}
	return m, nil
}

// dirs returns the folders of the watched files, each once.
func (r *Reloader) dirs() []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range append([]string{r.cfg.CertFile, r.cfg.KeyFile, r.cfg.CAFile}, r.cfg.CRLFiles...) {
		if f == "" {
			continue
		}
		d := filepath.Dir(f)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func (r *Reloader) run() {
	defer r.wg.Done()
	poll := time.NewTicker(r.cfg.pollInterval())
	defer poll.Stop()
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	defer wait.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if r.watcher != nil {
		events, errs = r.watcher.Events, r.watcher.Errors
	}
	for {
		select {
		case <-r.done:
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any change in a watched folder: Kubernetes swaps a "..data"
			// symlink, editors rename temporary files. The content
			// fingerprint decides whether anything changed.
			wait.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.event(mqttsec.EventError, "", fmt.Errorf("tlsconf: fsnotify: %w", err))
		case <-wait.C:
			_ = r.reload(false)
		case <-poll.C:
			_ = r.reload(false)
			r.recheckExpiry()
		}
	}
}

// Server returns a server *tls.Config: TLS 1.2 or later, AEAD suites,
// modern curves, ALPN, client certificates per Config.ClientAuth checked
// against the CA bundle, the revocation lists, AllowedNames, PinnedSPKI and
// VerifyPeer. Every handshake uses the material current when it starts
// (through GetConfigForClient). It fails without a certificate.
//
// The returned Config must not be modified after use; it may be cloned.
func (r *Reloader) Server() (*tls.Config, error) {
	m := r.cur.Load()
	if m.cert == nil {
		return nil, fmt.Errorf("%w: a server needs cert_file and key_file", ErrConfig)
	}
	if r.cfg.clientAuth() == tls.NoClientCert && (m.names != nil || m.pins != nil) {
		return nil, fmt.Errorf("%w: allowed_names and pinned_spki check client certificates: set ca_file and client_auth", ErrConfig)
	}
	s := r.tmpl.Clone()
	s.ClientAuth = r.cfg.clientAuth()
	s.ClientCAs = m.pool
	s.GetCertificate = r.getCertificate
	s.GetConfigForClient = r.getConfigForClient
	s.VerifyConnection = func(cs tls.ConnectionState) error { return r.verify(r.cur.Load(), cs, true) }
	return s, nil
}

func (r *Reloader) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	m := r.cur.Load()
	if m.server == nil {
		return nil, fmt.Errorf("%w: no server certificate", ErrConfig)
	}
	return m.server, nil
}

func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := r.cur.Load()
	if m.cert == nil {
		return nil, fmt.Errorf("%w: no server certificate", ErrConfig)
	}
	return m.cert, nil
}

// Client returns a client *tls.Config: TLS 1.2 or later, AEAD suites,
// modern curves, ALPN "mqtt", the server's name always verified, the
// client certificate (if any) read from the current material at each
// handshake, and the revocation lists, AllowedNames, PinnedSPKI and
// VerifyPeer checked on full and resumed handshakes. The root CAs are
// those current when Client is called: call it for each dial to follow a
// reloaded CA bundle.
//
// The returned Config must not be modified after use; it may be cloned.
func (r *Reloader) Client() *tls.Config {
	m := r.cur.Load()
	c := r.tmpl.Clone()
	c.RootCAs = m.pool
	c.ServerName = r.cfg.ServerName
	c.GetClientCertificate = r.getClientCertificate
	c.VerifyConnection = func(cs tls.ConnectionState) error { return r.verify(r.cur.Load(), cs, false) }
	if !r.cfg.DisableSessionTickets {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(0)
	}
	return c
}

func (r *Reloader) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if m := r.cur.Load(); m.cert != nil {
		return m.cert, nil
	}
	return &tls.Certificate{}, nil // no certificate: the server decides
}

// verify runs the checks crypto/tls does not: on resumed sessions the
// chain against the current CA bundle, then revocation, names, pins and
// the user's VerifyPeer. crypto/tls calls it on resumed handshakes too.
func (r *Reloader) verify(m *material, cs tls.ConnectionState, server bool) error {
	err := r.check(m, cs, server)
	if err != nil {
		r.cfg.events().Event(mqttsec.Event{Time: r.cfg.now(), Kind: mqttsec.EventConnectDenied, Source: EventSource,
			Code: mqttsec.CodeOf(err), Err: err})
	}
	return err
}

func (r *Reloader) check(m *material, cs tls.ConnectionState, server bool) error {
	if len(cs.PeerCertificates) == 0 {
		// A server with verify-if-given and a client that sent nothing;
		// crypto/tls already refused it under "require".
		return r.verifyPeer(cs)
	}
	chains := cs.VerifiedChains
	if cs.DidResume && m.pool != nil {
		// The session was verified against the bundle of its time; the
		// bundle may have been reloaded since.
		var err error
		if chains, err = r.reverify(m, cs.PeerCertificates, server); err != nil {
			return err
		}
		cs.VerifiedChains = chains
	}
	if len(chains) == 0 {
		chains = [][]*x509.Certificate{cs.PeerCertificates}
	}
	leaf := cs.PeerCertificates[0]
	if m.revoked != nil {
		for _, chain := range chains {
			for _, c := range chain {
				if _, ok := m.revoked[revokedKey(c.RawIssuer, c.SerialNumber)]; ok {
					return fmt.Errorf("%w: %q (serial %s)", ErrRevoked, c.Subject.String(), c.SerialNumber.Text(16))
				}
			}
		}
	}
	if m.names != nil && !nameAllowed(m.names, leaf) {
		return fmt.Errorf("%w: %q", ErrNameNotAllowed, leaf.Subject.String())
	}
	if m.pins != nil && !pinned(m.pins, chains) {
		return fmt.Errorf("%w: %q", ErrPinMismatch, leaf.Subject.String())
	}
	return r.verifyPeer(cs)
}

// VerifyClientCertificate checks a client's certificate chain, as the
// client sent it (leaf first, then intermediates; a connection's
// tls.ConnectionState.PeerCertificates), against the current material as
// a new handshake would: the chain must verify against the current CA
// bundle for client authentication at the current time ([ErrUntrusted]),
// no certificate of it may be in the current revocation lists
// ([ErrRevoked]), and AllowedNames, PinnedSPKI and VerifyPeer apply. The
// errors wrap [mqttsec.ErrNotAuthorized]. A Reloader without a CA bundle
// verifies no client: [ErrUntrusted].
//
// It is how an already connected client is checked again after a reload:
// auth.X509Config.Verifier takes the Reloader, and the Guard asks it after
// every reload reported to it (see Config.Events). It reports no event.
func (r *Reloader) VerifyClientCertificate(chain []*x509.Certificate) error {
	m := r.cur.Load()
	if len(chain) == 0 || chain[0] == nil {
		return fmt.Errorf("%w: no client certificate", ErrUntrusted)
	}
	if m.pool == nil {
		return fmt.Errorf("%w: no ca_file to verify client certificates with", ErrUntrusted)
	}
	return r.check(m, tls.ConnectionState{PeerCertificates: chain, DidResume: true}, true)
}

func (r *Reloader) verifyPeer(cs tls.ConnectionState) error {
	if r.cfg.VerifyPeer != nil {
		return r.cfg.VerifyPeer(cs)
	}
	return nil
}

func (r *Reloader) reverify(m *material, peer []*x509.Certificate, server bool) ([][]*x509.Certificate, error) {
	opts := x509.VerifyOptions{
		Roots:         m.pool,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   r.cfg.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if server {
		opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, c := range peer[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := peer[0].Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("%w: resumed session: %w", ErrUntrusted, err)
	}
	return chains, nil
}

func nameAllowed(names map[string]struct{}, c *x509.Certificate) bool {
	if _, ok := names[c.Subject.CommonName]; ok && c.Subject.CommonName != "" {
		return true
	}
	for _, n := range c.DNSNames {
		if _, ok := names[n]; ok {
			return true
		}
	}
	for _, n := range c.EmailAddresses {
		if _, ok := names[n]; ok {
			return true
		}
	}
	for _, u := range c.URIs {
		if _, ok := names[u.String()]; ok {
			return true
		}
	}
	for _, ip := range c.IPAddresses {
		if _, ok := names[ip.String()]; ok {
			return true
		}
	}
	return false
}

func pinned(pins map[[32]byte]struct{}, chains [][]*x509.Certificate) bool {
	for _, chain := range chains {
		for _, c := range chain {
			if _, ok := pins[sha256.Sum256(c.RawSubjectPublicKeyInfo)]; ok {
				return true
			}
		}
	}
	return false
}

// Server builds a server *tls.Config from c, loading and checking its
// files once (no reload; see [NewReloader] for that). Expiry warnings go to
// c.Events.
func (c Config) Server() (*tls.Config, error) {
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	return r.Server()
}

// Client builds a client *tls.Config from c, loading and checking its
// files once (no reload; see [NewReloader] for that). Expiry warnings go to
// c.Events.
func (c Config) Client() (*tls.Config, error) {
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	return r.Client(), nil
}

// Check validates c, loads and checks its files as Server and Client do,
// and returns the warnings (certificates expiring within ExpiryWarning,
// stale revocation lists) without building anything. Events are not
// called.
func (c Config) Check() (warnings []error, err error) {
	c.Events = mqttsec.EventSinkFunc(func(mqttsec.Event) {})
	r, err := newReloader(c)
	if err != nil {
		return nil, err
	}
	return r.Warnings(), nil
}
