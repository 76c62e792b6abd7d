package config

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/topic"
)

// The bridges of a File run inside the broker: each is an MQTT client of
// the local broker that reaches it through an in-memory listener (a
// bridge.Pipe, no network port) and is authenticated and authorized there
// like any client, with an identity of its own and exactly the permissions
// its mappings need.
const (
	// BridgeListener is the name of the in-memory listener of the bridges
	// (mqttsec.Client.Listener of their local connections). A configured
	// listener cannot have it: '$' is not allowed in listener names.
	BridgeListener = "$bridges"
	// MethodBridge is the mqttsec.Method of a bridge's local identity,
	// whose Subject is "bridge:" and the bridge's name.
	MethodBridge mqttsec.Method = "bridge"
)

// localBridge is what the local broker knows of one bridge.
type localBridge struct {
	cfg    bridge.Config // with paths resolved
	user   string        // "bridge:NAME"
	secret []byte        // its password on the in-memory listener
	grants []mqttsec.Grant
}

// resolvedBridges returns the bridges with their paths taken from the
// file's folder.
func (f *File) resolvedBridges() []bridge.Config {
	out := make([]bridge.Config, len(f.Bridges))
	for i, b := range f.Bridges {
		b.TLS.CertFile = f.Path(b.TLS.CertFile)
		b.TLS.KeyFile = f.Path(b.TLS.KeyFile)
		b.TLS.CAFile = f.Path(b.TLS.CAFile)
		crls := make([]string, len(b.TLS.CRLFiles))
		for j, c := range b.TLS.CRLFiles {
			crls[j] = f.Path(c)
		}
		b.TLS.CRLFiles = crls
		b.PasswordFile = f.Path(b.PasswordFile)
		if b.MaxPacketSize == 0 {
			// Larger messages would be refused by this broker (0x95, a
			// disconnection) and sent again: keep them at the remote.
			b.MaxPacketSize = f.MaxPayload()
		}
		out[i] = b
	}
	return out
}

// validateBridges checks the bridges as bridge.ValidateAll does, and that
// each one's local permissions can be derived and its messages fit.
func (f *File) validateBridges(add func(error, ...any)) {
	if len(f.Bridges) == 0 {
		return
	}
	bs := f.resolvedBridges()
	valid := true
	for i, b := range bs {
		for _, err := range split(b.Validate()) {
			kind := ErrInvalid
			if errors.Is(err, bridge.ErrInsecure) {
				kind = ErrInsecure
			}
			add(wrapf(kind, "%w", err), "bridges", i)
			valid = false
		}
	}
	if valid {
		// What is left are conflicts between bridges: names, client IDs.
		for _, err := range split(bridge.ValidateAll(bs)) {
			add(wrapf(ErrInvalid, "%w", err), "bridges")
		}
	}
	for i, b := range bs {
		if _, err := b.LocalGrants(); err != nil {
			add(wrapf(ErrInvalid, "%w", err), "bridges", i, "topics")
		}
		if f.Bridges[i].MaxPacketSize > f.MaxPayload() {
			add(wrapf(ErrInvalid, "max_packet_size %d is above ratelimit.max_payload %d: a larger message would be refused here and disconnect the bridge",
				f.Bridges[i].MaxPacketSize, f.MaxPayload()), "bridges", i, "max_packet_size")
		}
	}
}

// openBridges prepares the local side of the bridges: their identities,
// passwords and permissions, and the in-memory listener.
func (r *Runtime) openBridges() error {
	if len(r.f.Bridges) == 0 {
		return nil
	}
	r.bridges = map[string]*localBridge{}
	for i, b := range r.f.resolvedBridges() {
		grants, err := b.LocalGrants()
		if err != nil {
			return r.f.errAt(wrapf(ErrInvalid, "%w", err), "bridges", i, "topics")
		}
		var key [32]byte
		if _, err := rand.Read(key[:]); err != nil {
			return err
		}
		lb := &localBridge{cfg: b, user: "bridge:" + b.Name, secret: []byte(base64.RawStdEncoding.EncodeToString(key[:])), grants: grants}
		r.bridges[lb.user] = lb
		r.bridgeOrder = append(r.bridgeOrder, lb)
	}
	r.pipe = bridge.NewPipe(BridgeListener)
	return nil
}

// bridgeAuth authenticates the bridges on their in-memory listener, and
// nothing else there. Elsewhere it abstains.
type bridgeAuth map[string]*localBridge

func (b bridgeAuth) Authenticate(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	if cl.Listener != BridgeListener {
		return nil, mqttsec.ErrAbstain
	}
	lb := b[cl.Username]
	if lb == nil || subtle.ConstantTimeCompare(cred.Password, lb.secret) != 1 {
		return nil, fmt.Errorf("%w: not a bridge of this broker", mqttsec.ErrBadCredentials)
	}
	return &mqttsec.Identity{Subject: lb.user, Method: MethodBridge, Grants: lb.grants}, nil
}

// Revalidate implements mqttsec.Revalidator: a bridge's identity holds for
// the life of the broker.
func (b bridgeAuth) Revalidate(_ context.Context, cl *mqttsec.Client) error {
	if isBridge(cl) && b[cl.Identity.Subject] != nil {
		return nil
	}
	return mqttsec.ErrAbstain
}

func isBridge(cl *mqttsec.Client) bool {
	return cl != nil && cl.Identity != nil && cl.Identity.Method == MethodBridge && cl.Listener == BridgeListener
}

// bridgeAuthz gives a bridge exactly the grants its identity carries, and
// asks next about every other client.
type bridgeAuthz struct{ next mqttsec.Authorizer }

func (a bridgeAuthz) Authorize(ctx context.Context, cl *mqttsec.Client, acc mqttsec.Access, t string) error {
	if isBridge(cl) {
		return grantsOnly(cl.Identity.Grants).Authorize(ctx, cl, acc, t)
	}
	return a.next.Authorize(ctx, cl, acc, t)
}

// Bind implements mqttsec.ClientBinder.
func (a bridgeAuthz) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	if isBridge(cl) {
		return grantsOnly(cl.Identity.Grants)
	}
	if cb, ok := a.next.(mqttsec.ClientBinder); ok {
		if bound := cb.Bind(cl); bound != nil {
			return bound
		}
	}
	return a.next
}

// grantsOnly authorizes by a list of grants, the first that matches
// deciding; none denies.
type grantsOnly []mqttsec.Grant

func (gs grantsOnly) Authorize(_ context.Context, _ *mqttsec.Client, acc mqttsec.Access, t string) error {
	for _, g := range gs {
		var match bool
		switch acc {
		case mqttsec.Subscribe:
			match = g.Access&mqttsec.Subscribe != 0 && topic.Covers(g.Topic, t)
		case mqttsec.Receive:
			match = g.Access&(mqttsec.Subscribe|mqttsec.Receive) != 0 && topic.Match(g.Topic, t)
		case mqttsec.Publish:
			match = g.Access&mqttsec.Publish != 0 && topic.Match(g.Topic, t)
		}
		if match {
			if g.Allow {
				return nil
			}
			break
		}
	}
	return mqttsec.ErrNotAuthorized
}

// bridgeLimiter exempts the bridges from the rates of a connection (a
// bridge carries the traffic of many devices) and passes every other
// client to the Limiter. Memory bounds still apply to bridges.
type bridgeLimiter struct{ next mqttsec.Limiter }

func (l bridgeLimiter) Allow(cl *mqttsec.Client, lim mqttsec.Limit, n int) error {
	if cl.Listener == BridgeListener {
		return nil // only the bridges can reach this listener
	}
	return l.next.Allow(cl, lim, n)
}

// Open implements mqttsec.ConnectionLimiter.
func (l bridgeLimiter) Open(s *mqttsec.Session) (mqttsec.ConnLimiter, error) {
	if isBridge(s.Client()) {
		return unlimited{}, nil
	}
	if cl, ok := l.next.(mqttsec.ConnectionLimiter); ok {
		return cl.Open(s)
	}
	return limiterConn{l.next}, nil
}

// limiterConn serves a connection with a Limiter that keeps no state per
// connection.
type limiterConn struct{ mqttsec.Limiter }

func (limiterConn) Close() {}

type unlimited struct{}

func (unlimited) Allow(*mqttsec.Client, mqttsec.Limit, int) error { return nil }
func (unlimited) Close()                                          {}

// bridgeRegistry keeps the client-ID binding from applying to the
// bridges' local client IDs, which are the bridges' own; the registry
// itself still does.
type bridgeRegistry struct{ bound, plain mqttsec.Registry }

func (r bridgeRegistry) Claim(ctx context.Context, cl *mqttsec.Client) (mqttsec.Lease, error) {
	if isBridge(cl) {
		return r.plain.Claim(ctx, cl)
	}
	return r.bound.Claim(ctx, cl)
}

// startBridges starts the bridges on the in-memory listener of s.
func (r *Runtime) startBridges(s *Server) error {
	for _, lb := range r.bridgeOrder {
		b, err := bridge.Start(r.ctx, lb.cfg, bridge.Local{URL: "mqtt://" + BridgeListener, Dial: r.pipe.DialContext,
			Username: lb.user, Password: lb.secret}, bridge.WithEvents(r.g))
		if err != nil {
			return errors.Join(fmt.Errorf("bridge %q: %w", lb.cfg.Name, err), s.closeBridges())
		}
		s.bridges = append(s.bridges, b)
		r.log.Info("bridge started", "bridge", lb.cfg.Name, "remote", lb.cfg.Remote)
	}
	return nil
}

// split returns the errors a joined error holds, err itself otherwise.
func split(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
