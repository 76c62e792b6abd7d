package acl

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// WildcardPolicy limits wildcard subscriptions before the wrapped
// authorizer is asked. It refuses, for every client that is not an admin:
//
//   - filters whose first wildcard comes before MinLevels literal levels
//     ("#", "+/#", "+/status" with MinLevels 1; "site/+/#" with 2), and
//   - filters under $SYS ("$SYS/#", "$SYS/broker/+") unless the client is
//     listed in SysSubjects.
//
// A client is matched by username, identity subject and identity roles.
// Denials wrap [ErrWildcard] (0x87). The zero value with MinLevels 0 only
// guards $SYS.
type WildcardPolicy struct {
	// MinLevels is how many literal levels a filter must start with before
	// a '+' or '#'. 1 refuses "#" and "+/#".
	MinLevels int
	// Admins are exempt from MinLevels.
	Admins []string
	// SysSubjects may subscribe to $SYS filters (admins too only if listed).
	SysSubjects []string
}

// Check returns nil when filter is allowed for cl, or an error wrapping
// [ErrWildcard]. A $share/{group}/ prefix is ignored: the filter inside it
// is checked.
func (p *WildcardPolicy) Check(cl *mqttsec.Client, filter string) error {
	filter, _ = topic.Unshare(filter)
	if filter == "$SYS" || strings.HasPrefix(filter, "$SYS/") {
		if !member(cl, p.SysSubjects) {
			return fmt.Errorf("%w: %q is reserved to system subscribers", ErrWildcard, filter)
		}
		return nil
	}
	if p.MinLevels <= 0 || member(cl, p.Admins) {
		return nil
	}
	lit := 0
	for lv := range strings.SplitSeq(filter, "/") {
		if lv == "+" || lv == "#" {
			if lit < p.MinLevels {
				return fmt.Errorf("%w: %q has a wildcard within its first %s", ErrWildcard, filter, levels(p.MinLevels))
			}
			return nil
		}
		lit++
	}
	return nil
}

func member(cl *mqttsec.Client, names []string) bool {
	if len(names) == 0 {
		return false
	}
	if cl.Username != "" && slices.Contains(names, cl.Username) {
		return true
	}
	if id := cl.Identity; id != nil {
		if id.Subject != "" && slices.Contains(names, id.Subject) {
			return true
		}
		for _, r := range id.Roles {
			if slices.Contains(names, r) {
				return true
			}
		}
	}
	return false
}

// Wrap returns an authorizer that applies p to subscriptions and then asks
// next. It keeps next's per-client binding, message checks and
// subscription QoS decisions ([mqttsec.SubscriptionAuthorizer]).
func (p *WildcardPolicy) Wrap(next mqttsec.Authorizer) mqttsec.Authorizer {
	return &wildcardAuthz{p: p, next: next}
}

type wildcardAuthz struct {
	p    *WildcardPolicy
	next mqttsec.Authorizer
}

func (w *wildcardAuthz) Authorize(ctx context.Context, cl *mqttsec.Client, a mqttsec.Access, t string) error {
	if a == mqttsec.Subscribe {
		if err := w.p.Check(cl, t); err != nil {
			return err
		}
	}
	return w.next.Authorize(ctx, cl, a, t)
}

func (w *wildcardAuthz) AuthorizeMessage(ctx context.Context, cl *mqttsec.Client, m *mqttsec.Message) error {
	if ma, ok := w.next.(mqttsec.MessageAuthorizer); ok {
		return ma.AuthorizeMessage(ctx, cl, m)
	}
	return w.next.Authorize(ctx, cl, mqttsec.Publish, m.Topic)
}

// AuthorizeSubscription applies the policy to sub.Filter, then lets next
// decide the QoS when it can (a grant's QoS list), or grants sub.QoS when
// next allows.
func (w *wildcardAuthz) AuthorizeSubscription(ctx context.Context, cl *mqttsec.Client, sub *mqttsec.Subscription) (byte, error) {
	if err := w.p.Check(cl, sub.Filter); err != nil {
		return 0, err
	}
	if sa, ok := w.next.(mqttsec.SubscriptionAuthorizer); ok {
		return sa.AuthorizeSubscription(ctx, cl, sub)
	}
	if err := w.next.Authorize(ctx, cl, mqttsec.Subscribe, sub.Filter); err != nil {
		return 0, err
	}
	return sub.QoS, nil
}

func (w *wildcardAuthz) Bind(cl *mqttsec.Client) mqttsec.Authorizer {
	if cb, ok := w.next.(mqttsec.ClientBinder); ok {
		if b := cb.Bind(cl); b != nil {
			return &wildcardAuthz{p: w.p, next: b}
		}
	}
	return w
}

var (
	_ mqttsec.MessageAuthorizer      = (*wildcardAuthz)(nil)
	_ mqttsec.SubscriptionAuthorizer = (*wildcardAuthz)(nil)
	_ mqttsec.ClientBinder           = (*wildcardAuthz)(nil)
)

// levels says "1 level" or "n levels".
func levels(n int) string {
	if n == 1 {
		return "level"
	}
	return fmt.Sprintf("%d levels", n)
}
