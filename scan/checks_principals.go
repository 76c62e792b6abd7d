package scan

import (
	"context"
	"fmt"
	"strings"
	"time"
)

const needSecond = "needs a second principal (Options.Second, --username2) or a broker that admits anonymous clients"

var retainedPoisoning = Check{
	ID:          "retained-poisoning",
	Title:       "Retained message of one principal replaced by another",
	Severity:    High,
	Remediation: "Give each principal write access to its own topics only; a retained message is what every future subscriber reads first, so whoever can replace it controls what devices see at start-up.",
	run: func(ctx context.Context, s *scanner) outcome {
		sec := s.second()
		if sec == nil || (sec.anonymous() && s.o.Principal.anonymous()) {
			return skip("%s", needSecond)
		}
		owner := &s.o.Principal
		t := s.topic("retained")
		a, why := s.principal5(ctx)
		if a == nil {
			return skip("%s", why)
		}
		code, err := a.publish(ctx, t, []byte("owner-"+s.id), true)
		if err != nil || code >= 0x80 {
			return skip("%s may not publish a retained message to %q (%s): set TopicPrefix to a prefix it owns", owner.describe(), t, pubText(code, err))
		}
		s.keepRetained(t, owner)

		var tries []string
		if b, ack, err := s.v5(ctx, sec, s.connOptsFor(sec)); err == nil {
			code, err := b.publish(ctx, t, []byte("intruder5-"+s.id), true)
			tries = append(tries, "MQTT 5 "+pubText(code, err))
		} else {
			tries = append(tries, "MQTT 5 "+connackText5(ack, err))
		}
		if b, code, err := s.v3(ctx, sec, s.connOptsFor(sec)); err == nil && code == 0 {
			err := b.publish(ctx, t, []byte("intruder3-"+s.id), 1, true)
			tries = append(tries, "MQTT 3.1.1 "+pub3Text(err))
		} else {
			tries = append(tries, "MQTT 3.1.1 "+connackText3(code, err))
		}

		r, why := s.principal5(ctx)
		if r == nil {
			return skip("%s", why)
		}
		if code, err := r.subscribe(ctx, t); err != nil || code >= 0x80 {
			return skip("%s may not read back %q", owner.describe(), t)
		}
		m, ok := expect(ctx, r.msgs, t, s.o.DeliveryWait)
		ev := fmt.Sprintf("%s published a retained message to %q; %s then published there (%s)", owner.describe(), t, sec.describe(), strings.Join(tries, "; "))
		switch {
		case !ok:
			return skip("%s, and no retained message could be read back within %s", ev, s.o.DeliveryWait)
		case strings.HasPrefix(string(m.payload), "intruder"):
			return fail("%s, and new subscribers now read the second principal's message", ev)
		}
		return pass("%s, and new subscribers still read the owner's message", ev)
	},
}

var willACLBypass = Check{
	ID:          "will-acl-bypass",
	Title:       "Will message published to a topic its sender may not publish to",
	Severity:    High,
	Remediation: "Authorize the will topic at CONNECT like a PUBLISH and refuse the connection otherwise (mochi-mqtt sends wills without an ACL check; mqttsec's Guard checks them).",
	run: func(ctx context.Context, s *scanner) outcome {
		sec := s.second()
		if sec == nil || (sec.anonymous() && s.o.Principal.anonymous()) {
			return skip("%s", needSecond)
		}
		t := s.topic("will")
		a, why := s.principal5(ctx)
		if a == nil {
			return skip("%s", why)
		}
		if code, err := a.subscribe(ctx, t); err != nil || code >= 0x80 {
			return skip("%s may not subscribe to %q: set TopicPrefix to a prefix it owns", s.o.Principal.describe(), t)
		}
		// Is there a boundary to bypass? The second principal's own
		// PUBLISH to t must be refused.
		b, ack, err := s.v5(ctx, sec, s.connOptsFor(sec))
		if err != nil {
			return skip("%s cannot connect: %s", sec.describe(), connackText5(ack, err))
		}
		code, err := b.publish(ctx, t, []byte("direct"), false)
		if _, got := expect(ctx, a.msgs, t, s.o.DeliveryWait); got {
			return skip("%s may publish to %q anyway (%s): no boundary for a will to bypass", sec.describe(), t, pubText(code, err))
		}
		_ = b.Close()

		var results []string
		for _, v := range []string{"MQTT 5", "MQTT 3.1.1"} {
			o := s.connOptsFor(sec)
			o.will = &will{topic: t, payload: []byte("will-" + s.id), qos: 1}
			var drop func()
			if v == "MQTT 5" {
				w, ack, err := s.v5(ctx, sec, o)
				if err != nil {
					results = append(results, fmt.Sprintf("%s CONNECT with the will refused (%s)", v, connackText5(ack, err)))
					continue
				}
				drop = w.drop
			} else {
				w, code, err := s.v3(ctx, sec, o)
				if err != nil || code != 0 {
					results = append(results, fmt.Sprintf("%s CONNECT with the will refused (%s)", v, connackText3(code, err)))
					continue
				}
				drop = w.drop
			}
			drop()
			if _, got := expect(ctx, a.msgs, t, s.o.DeliveryWait); got {
				return fail("%s may not publish to %q (%s), yet its %s will was published there when its connection dropped", sec.describe(), t, pubText(code, err), v)
			}
			results = append(results, fmt.Sprintf("%s CONNECT accepted, but the will was not delivered within %s", v, s.o.DeliveryWait))
		}
		return pass("%s may not publish to %q (%s); %s", sec.describe(), t, pubText(code, err), strings.Join(results, "; "))
	},
}

var clientIDTakeover = Check{
	ID:          "clientid-takeover",
	Title:       "Client-ID takeover of another principal's session",
	Severity:    High,
	Remediation: "Bind client IDs to identities and refuse a CONNECT that reuses a client ID held by another identity (Mosquitto: use_username_as_clientid or a plugin; mqttsec: the Guard's registry answers 0x85). Otherwise anyone can disconnect any device and receive its messages.",
	run: func(ctx context.Context, s *scanner) outcome {
		sec := s.o.Second
		if sec == nil && s.anonymousOK {
			sec = &Credentials{}
		}
		if sec == nil {
			return skip("%s", needSecond)
		}
		var results []string
		for _, v := range []string{"MQTT 5", "MQTT 3.1.1"} {
			o := s.connOptsFor(&s.o.Principal)
			id := o.clientID
			var victimDone <-chan struct{}
			if v == "MQTT 5" {
				a, ack, err := s.v5(ctx, &s.o.Principal, o)
				if err != nil {
					return skip("%s cannot connect: %s", s.o.Principal.describe(), connackText5(ack, err))
				}
				victimDone = a.done
			} else {
				a, code, err := s.v3(ctx, &s.o.Principal, o)
				if err != nil || code != 0 {
					return skip("%s cannot connect: %s", s.o.Principal.describe(), connackText3(code, err))
				}
				victimDone = a.done
			}
			o2 := s.connOptsFor(sec)
			o2.clientID = id
			var refusal string
			if v == "MQTT 5" {
				if _, ack, err := s.v5(ctx, sec, o2); err != nil {
					refusal = connackText5(ack, err)
				}
			} else if _, code, err := s.v3(ctx, sec, o2); err != nil || code != 0 {
				refusal = connackText3(code, err)
			}
			if refusal != "" {
				results = append(results, fmt.Sprintf("%s: refused (%s)", v, refusal))
				continue
			}
			select {
			case <-victimDone:
				return fail("%s connected with the client ID %q of %s's live session, and the broker ended that session (%s)", sec.describe(), id, s.o.Principal.describe(), v)
			case <-time.After(s.o.DeliveryWait):
				results = append(results, fmt.Sprintf("%s: accepted, but the first session stayed connected", v))
			case <-ctx.Done():
				return skip("deadline while waiting for the first session to end")
			}
		}
		return pass("%s connecting with the client ID of %s's live session: %s", sec.describe(), s.o.Principal.describe(), strings.Join(results, "; "))
	},
}

// pubText describes a PUBACK for evidence.
func pubText(code byte, err error) string {
	if err != nil {
		return errText(err)
	}
	if code >= 0x80 {
		return fmt.Sprintf("PUBACK 0x%02X, refused", code)
	}
	return fmt.Sprintf("PUBACK 0x%02X", code)
}

// pub3Text describes an MQTT 3.1.1 PUBACK, which cannot refuse.
func pub3Text(err error) string {
	if err != nil {
		return errText(err)
	}
	return "PUBACK (which cannot say denied)"
}
