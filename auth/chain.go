package auth

import (
	"context"
	"errors"
	"fmt"

	"github.com/mqttsec/mqttsec"
)

// Chain returns an Authenticator that asks each of authns in order. The
// first one that does not abstain decides: its Identity is returned, or its
// denial (given reason code 0x86 if it carries none). When all abstain, or
// authns is empty, the chain denies with [mqttsec.ErrBadCredentials] (0x86).
// A chain never allows anonymous access unless an [Anonymous] authenticator
// is in it. A cancelled ctx stops the chain with ctx's error.
//
// The chain is an [mqttsec.Revalidator]: it asks every element that is a
// Revalidator about a session. One that vouches for the identity (nil)
// keeps the session; otherwise one that cannot decide (an error without a
// denial's reason code, or 0x88/0x89: a backend that cannot be reached)
// keeps it too, as it might have vouched; otherwise a denial ends it; when
// every element abstains, or none is a Revalidator, the chain abstains. The
// order does not matter there: an identity is judged by what issued it,
// not by what would authenticate first.
//
// The chain is safe for concurrent use if its elements are.
func Chain(authns ...mqttsec.Authenticator) mqttsec.Authenticator {
	c := make(chain, 0, len(authns))
	for _, a := range authns {
		if a != nil {
			c = append(c, a)
		}
	}
	return c
}

type chain []mqttsec.Authenticator

var errAllAbstained = deny("no authenticator accepted the credentials")

func (c chain) Authenticate(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
	for _, a := range c {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %w", mqttsec.ErrServerBusy, err)
		}
		id, err := a.Authenticate(ctx, cl, cred)
		switch {
		case err == nil && id != nil:
			return id, nil
		case err == nil:
			return nil, deny("authenticator returned no identity")
		case errors.Is(err, mqttsec.ErrAbstain):
			continue
		}
		var re *mqttsec.ReasonError
		if !errors.As(err, &re) {
			err = fmt.Errorf("%w: %w", mqttsec.ErrBadCredentials, err)
		}
		return nil, err
	}
	return nil, errAllAbstained
}

// Revalidate implements [mqttsec.Revalidator]: see [Chain].
func (c chain) Revalidate(ctx context.Context, cl *mqttsec.Client) error {
	var denial, undecided error
	for _, a := range c {
		rv, ok := a.(mqttsec.Revalidator)
		if !ok {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", mqttsec.ErrServerBusy, err)
		}
		err := rv.Revalidate(ctx, cl)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, mqttsec.ErrAbstain):
		case isVerdict(err):
			if denial == nil {
				denial = err
			}
		default:
			if undecided == nil {
				undecided = err
			}
		}
	}
	if undecided != nil {
		return undecided
	}
	if denial != nil {
		return denial
	}
	return mqttsec.ErrAbstain
}

// isVerdict reports whether a Revalidate error is a denial, as
// [mqttsec.Guard.Revalidate] reads it: it carries a reason code other than
// 0x80, 0x88 and 0x89.
func isVerdict(err error) bool {
	switch mqttsec.CodeOf(err) {
	case mqttsec.CodeUnspecified, mqttsec.CodeServerUnavailable, mqttsec.CodeServerBusy:
		return false
	}
	return true
}

// Anonymous returns an Authenticator that allows a CONNECT carrying no
// credentials at all (no user name, no password, no enhanced
// authentication method) as the identity {Subject: "anonymous", Method:
// MethodAnonymous, Roles: roles}, and abstains for every other CONNECT, so
// a wrong password is never let in anonymously. Put it last in a [Chain];
// without it nothing is anonymous.
//
// It is safe for concurrent use.
func Anonymous(roles ...string) mqttsec.Authenticator {
	id := &mqttsec.Identity{Subject: "anonymous", Method: mqttsec.MethodAnonymous, Roles: append([]string(nil), roles...)}
	return mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
		if cl.Username != "" || len(cred.Password) > 0 || cred.AuthMethod != "" {
			return nil, mqttsec.ErrAbstain
		}
		return id, nil
	})
}

// AuthenticateCached implements [mqttsec.CachedAuthenticator] for the
// chain's first authenticator only: a later one answering from its cache
// would skip the decision of an earlier one (a certificate it would
// refuse, say).
func (c chain) AuthenticateCached(ctx context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, bool) {
	if len(c) == 0 {
		return nil, false
	}
	if ca, ok := c[0].(mqttsec.CachedAuthenticator); ok {
		return ca.AuthenticateCached(ctx, cl, cred)
	}
	return nil, false
}
