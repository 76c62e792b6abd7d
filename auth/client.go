package auth

import (
	"context"
	"crypto"
	"fmt"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/golang-jwt/jwt/v5"
)

// CredentialProvider supplies the user name and password of a client's
// CONNECT. It is asked on every connection attempt, so it can return a
// fresh token each time. It is called from autopaho's connection goroutine
// and must be safe for concurrent use; the returned password is not
// retained by the caller beyond the CONNECT.
type CredentialProvider interface {
	Credentials(ctx context.Context) (username string, password []byte, err error)
}

// CredentialProviderFunc adapts a function to a CredentialProvider.
type CredentialProviderFunc func(ctx context.Context) (string, []byte, error)

// Credentials calls f(ctx).
func (f CredentialProviderFunc) Credentials(ctx context.Context) (string, []byte, error) {
	return f(ctx)
}

// StaticCredentials returns a provider of a fixed user name and password.
// The password is copied. It is safe for concurrent use.
func StaticCredentials(username string, password []byte) CredentialProvider {
	pw := append([]byte(nil), password...)
	return CredentialProviderFunc(func(context.Context) (string, []byte, error) {
		return username, append([]byte(nil), pw...), nil
	})
}

// TokenSource returns a token (a JWT) for the next connection attempt. It
// must be safe for concurrent use.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// TokenSourceFunc adapts a function to a TokenSource, for a token fetched
// from an identity provider.
type TokenSourceFunc func(ctx context.Context) (string, error)

// Token calls f(ctx).
func (f TokenSourceFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// JWTCredentials returns a provider that sends username (which may be
// empty) and a token from src as the password, asking src on every
// connection attempt.
func JWTCredentials(username string, src TokenSource) CredentialProvider {
	return CredentialProviderFunc(func(ctx context.Context) (string, []byte, error) {
		tok, err := src.Token(ctx)
		if err != nil {
			return "", nil, err
		}
		return username, []byte(tok), nil
	})
}

// JWTMinter is a [TokenSource] that signs a fresh short-lived token for
// each connection, for a device holding its own signing key. It is safe
// for concurrent use.
type JWTMinter struct {
	// Method is the signing method, e.g. jwt.SigningMethodES256.
	Method jwt.SigningMethod
	// Key is the signing key ([]byte for HS*, a crypto.Signer otherwise).
	Key any
	// KeyID, if set, is sent as the "kid" header.
	KeyID string
	// Subject, Issuer and Audience fill "sub", "iss" and "aud".
	Subject  string
	Issuer   string
	Audience string
	// TTL is the token lifetime; zero means one hour. The broker
	// disconnects the client when the token expires, and the client then
	// reconnects with a new one.
	TTL time.Duration
	// Claims are extra claims (an "acl" claim, say). They must not use the
	// registered names above.
	Claims map[string]any
	// Clock returns the current time. Nil means time.Now.
	Clock func() time.Time
}

// Token signs a new token.
func (m *JWTMinter) Token(context.Context) (string, error) {
	if m.Method == nil || m.Key == nil {
		return "", fmt.Errorf("%w: jwt minter needs a method and a key", ErrConfig)
	}
	if _, ok := m.Key.([]byte); !ok {
		if _, ok := m.Key.(crypto.Signer); !ok {
			return "", fmt.Errorf("%w: jwt minter key must be []byte or a crypto.Signer", ErrConfig)
		}
	}
	now := time.Now
	if m.Clock != nil {
		now = m.Clock
	}
	ttl := m.TTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	t := now()
	claims := jwt.MapClaims{}
	for k, v := range m.Claims {
		claims[k] = v
	}
	claims["iat"] = t.Unix()
	claims["nbf"] = t.Unix()
	claims["exp"] = t.Add(ttl).Unix()
	if m.Subject != "" {
		claims["sub"] = m.Subject
	}
	if m.Issuer != "" {
		claims["iss"] = m.Issuer
	}
	if m.Audience != "" {
		claims["aud"] = m.Audience
	}
	tok := jwt.NewWithClaims(m.Method, claims)
	if m.KeyID != "" {
		tok.Header["kid"] = m.KeyID
	}
	s, err := tok.SignedString(m.Key)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return s, nil
}

// ConnectPacketBuilder returns a function for
// autopaho.ClientConfig.ConnectPacketBuilder that asks p for credentials on
// every connection attempt (waiting at most timeout, zero meaning 10 s) and
// sets them on the CONNECT. A provider error aborts that attempt; autopaho
// retries after its back-off.
func ConnectPacketBuilder(p CredentialProvider, timeout time.Duration) func(*paho.Connect, *url.URL) (*paho.Connect, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		user, pw, err := p.Credentials(ctx)
		if err != nil {
			return nil, fmt.Errorf("auth: credentials: %w", err)
		}
		cp.Username, cp.UsernameFlag = user, user != ""
		cp.Password, cp.PasswordFlag = pw, len(pw) > 0
		return cp, nil
	}
}

// Configure installs p on cfg: it clears cfg's static user name and
// password and chains p's ConnectPacketBuilder before any builder already
// set. When cfg has no AuthHandler it installs [NoEnhancedAuth]: paho
// calls the AuthHandler for a CONNACK that names an authentication method
// and crashes without one, so whoever answers the CONNECT could stop the
// client.
func Configure(cfg *autopaho.ClientConfig, p CredentialProvider) {
	cfg.ConnectUsername, cfg.ConnectPassword = "", nil
	if cfg.AuthHandler == nil {
		cfg.AuthHandler = NoEnhancedAuth{}
	}
	build := ConnectPacketBuilder(p, 0)
	prev := cfg.ConnectPacketBuilder
	cfg.ConnectPacketBuilder = func(cp *paho.Connect, u *url.URL) (*paho.Connect, error) {
		cp, err := build(cp, u)
		if err != nil || prev == nil {
			return cp, err
		}
		return prev(cp, u)
	}
}

// NoEnhancedAuth is the paho.Auther of a client that uses no MQTT v5
// enhanced authentication (no AuthMethod in its CONNECT). A server may not
// start an AUTH exchange with such a client: NoEnhancedAuth answers one
// with an AUTH that names no method, a protocol error that ends it, and
// ignores a CONNACK that names a method. [Configure] installs it.
type NoEnhancedAuth struct{}

// Authenticate answers an AUTH packet: with reason 0x18 and no method.
func (NoEnhancedAuth) Authenticate(*paho.Auth) *paho.Auth { return &paho.Auth{ReasonCode: 0x18} }

// Authenticated does nothing.
func (NoEnhancedAuth) Authenticated() {}
