package integrity

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of [JWKSConfig].
const (
	DefaultJWKSRefresh    = time.Hour
	DefaultJWKSMinRefresh = 5 * time.Minute
	DefaultJWKSTimeout    = 10 * time.Second
	DefaultJWKSMaxBytes   = 1 << 20
)

// JWKSConfig configures a [JWKS] key source. URL is required.
type JWKSConfig struct {
	// URL is the JWK Set's address. It must be https, except for a
	// loopback host (127.0.0.1, ::1, localhost) or with
	// InsecureAllowHTTP.
	URL string
	// InsecureAllowHTTP allows a plain http URL to a non-loopback host:
	// anyone on the path can then replace the keys.
	InsecureAllowHTTP bool
	// HTTPClient fetches the set. Nil means http.DefaultClient.
	HTTPClient *http.Client
	// Refresh is the refresh interval; zero means DefaultJWKSRefresh.
	Refresh time.Duration
	// MinRefresh is the least time between two fetches caused by unknown
	// key IDs (key rotation); zero means DefaultJWKSMinRefresh. Between
	// them an unknown key ID is refused at once, so a flood of made-up key
	// IDs costs one fetch per MinRefresh.
	MinRefresh time.Duration
	// Timeout bounds one fetch; zero means DefaultJWKSTimeout.
	Timeout time.Duration
	// MaxBytes bounds the response body; zero means DefaultJWKSMaxBytes.
	MaxBytes int64
	// OnError is called when a fetch fails or a key of the set is
	// skipped. It must not block.
	OnError func(err error)
}

// JWKS is a [KeySource] backed by a JWK Set URL, as a [Keyring] is by a
// file: keys are parsed by [ParseKey], each with its "sub". The set is
// fetched at construction and every Refresh, and again (at most every
// MinRefresh) when a message names a key ID the set lacks: a key added to
// the set is picked up at its first use (rotation by key ID). When a fetch
// fails, or returns a set that does not parse, the keys fetched before stay
// in use; until a first fetch succeeds every key is unknown. Keys that do
// not parse are skipped (and reported), so one bad key does not take the
// others down.
//
// A JWKS is safe for concurrent use. It runs a goroutine until [JWKS.Close].
type JWKS struct {
	cfg     JWKSConfig
	client  *http.Client
	keys    Keyring
	limiter *rate.Limiter
	cancel  context.CancelFunc
	done    chan struct{}
	fetchMu sync.Mutex
}

// NewJWKS returns a JWKS source and makes its first fetch. A failed first
// fetch is reported to OnError, not returned. ctx bounds the refresh
// goroutine.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("%w: jwks: URL %q is not absolute", ErrConfig, cfg.URL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !cfg.InsecureAllowHTTP && !loopback(u.Hostname()) {
			return nil, fmt.Errorf("%w: jwks: %q is not https (InsecureAllowHTTP allows it)", ErrConfig, cfg.URL)
		}
	default:
		return nil, fmt.Errorf("%w: jwks: unsupported URL scheme %q", ErrConfig, u.Scheme)
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultJWKSRefresh
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = DefaultJWKSMinRefresh
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultJWKSTimeout
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultJWKSMaxBytes
	}
	j := &JWKS{cfg: cfg, client: cfg.HTTPClient, done: make(chan struct{})}
	if j.client == nil {
		j.client = http.DefaultClient
	}
	j.limiter = rate.NewLimiter(rate.Every(cfg.MinRefresh), 1)
	j.limiter.Allow() // the first fetch below uses the token
	ctx, j.cancel = context.WithCancel(ctx)
	if err := j.fetch(ctx); err != nil {
		j.report(err)
	}
	go j.run(ctx)
	return j, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close stops the refresh goroutine. It is safe to call more than once.
func (j *JWKS) Close() error {
	j.cancel()
	<-j.done
	return nil
}

func (j *JWKS) run(ctx context.Context) {
	defer close(j.done)
	t := time.NewTicker(j.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := j.fetch(ctx); err != nil {
				j.report(err)
			}
		}
	}
}

func (j *JWKS) report(err error) {
	if j.cfg.OnError != nil {
		j.cfg.OnError(err)
	}
}

// Key implements [KeySource]. An unknown key ID triggers a fetch when
// MinRefresh has passed since the last one; the caller waits for it
// (bounded by Timeout and ctx).
func (j *JWKS) Key(ctx context.Context, id string) (*Key, error) {
	k, err := j.keys.Key(ctx, id)
	if err == nil || !j.limiter.Allow() {
		return k, err
	}
	if ferr := j.fetch(ctx); ferr != nil {
		j.report(ferr)
		return nil, fmt.Errorf("%w %q (refresh failed)", ErrUnknownKey, id)
	}
	return j.keys.Key(ctx, id)
}

// Keys returns the keys of the last set fetched, sorted by ID.
func (j *JWKS) Keys() []*Key { return j.keys.Keys() }

// fetch gets and installs the set. Concurrent fetches are serialized.
func (j *JWKS) fetch(ctx context.Context) error {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.URL, nil)
	if err != nil {
		return fmt.Errorf("integrity: jwks: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("integrity: jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("integrity: jwks: %s answered %s", j.cfg.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, j.cfg.MaxBytes+1))
	if err != nil {
		return fmt.Errorf("integrity: jwks: %w", err)
	}
	if int64(len(body)) > j.cfg.MaxBytes {
		return fmt.Errorf("integrity: jwks: set larger than %d bytes", j.cfg.MaxBytes)
	}
	keys, skipped, err := parseKeysLenient(body)
	if err != nil {
		return fmt.Errorf("integrity: jwks: %w", err)
	}
	for _, e := range skipped {
		j.report(fmt.Errorf("integrity: jwks: key skipped: %w", e))
	}
	if err := j.keys.Replace(keys...); err != nil {
		return fmt.Errorf("integrity: jwks: %w", err)
	}
	return nil
}

// parseKeysLenient parses a JWK Set, skipping the keys that do not parse
// instead of failing the whole set. A key ID used twice drops every key
// with that ID: which one is meant cannot be known.
func parseKeysLenient(data []byte) ([]*Key, []error, error) {
	set, err := decodeSet(data)
	if err != nil {
		return nil, nil, err
	}
	var skipped []error
	keys := make([]*Key, 0, len(set.Keys))
	count := make(map[string]int, len(set.Keys))
	for i, raw := range set.Keys {
		k, err := ParseKey(raw)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		count[k.id]++
		keys = append(keys, k)
	}
	keys = slices.DeleteFunc(keys, func(k *Key) bool { return count[k.id] > 1 })
	for id, n := range count {
		if n > 1 {
			skipped = append(skipped, fmt.Errorf("%w: key ID %q used %d times; all dropped", ErrConfig, id, n))
		}
	}
	return keys, skipped, nil
}
