package scan

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

var wildcardSubscribe = Check{
	ID:          "wildcard-subscribe",
	Title:       `SUBSCRIBE to "#" or "+/#" granted`,
	Severity:    High,
	Remediation: "Give each principal read access to its own topics only (Mosquitto: acl_file with per-user topic lines or %u/%c patterns; mqttsec: acl.Casbin with acl.WildcardPolicy). A client that can subscribe to # reads every message.",
	run: func(ctx context.Context, s *scanner) outcome {
		c, why := s.principal5(ctx)
		if c == nil {
			return skip("%s", why)
		}
		var granted, refused []string
		for _, f := range []string{"#", "+/#"} {
			code, err := c.subscribe(ctx, f)
			switch {
			case err != nil:
				return skip("SUBSCRIBE %q: %s", f, errText(err))
			case code < 0x80:
				granted = append(granted, fmt.Sprintf("%q (QoS %d)", f, code))
			default:
				refused = append(refused, fmt.Sprintf("%q (0x%02X)", f, code))
			}
		}
		if len(granted) == 0 {
			return pass("%s refused SUBSCRIBE to %s", s.o.Principal.describe(), strings.Join(refused, " and "))
		}
		head := fmt.Sprintf("%s was granted SUBSCRIBE to %s", s.o.Principal.describe(), strings.Join(granted, " and "))
		return s.confirmWildcard(ctx, c, head)
	},
}

// confirmWildcard decides whether a granted wildcard subscription reads
// what its principal has no business reading: a grant alone may be
// harmless (Mosquitto grants every SUBSCRIBE and filters deliveries).
//
// With TopicPrefix and a second principal, the probe goes the other way:
// the second principal subscribes to "#" and the principal publishes under
// its own prefix; a delivery there is a leak. Otherwise the principal
// publishes a probe outside TopicPrefix (anywhere, without one: it owns
// nothing in particular) and any delivery outside the prefix through its
// own "#" confirms the grant.
func (s *scanner) confirmWildcard(ctx context.Context, c *conn5, head string) outcome {
	outside := func(m message) bool {
		return s.o.TopicPrefix == "" || !strings.HasPrefix(m.topic, s.o.TopicPrefix)
	}
	sec := s.second()
	if s.o.TopicPrefix != "" && sec != nil && !(sec.anonymous() && s.o.Principal.anonymous()) {
		b, ack, err := s.v5(ctx, sec, s.connOptsFor(sec))
		if err != nil {
			return skip("%s; the second principal cannot connect: %s", head, connackText5(ack, err))
		}
		code, err := b.subscribe(ctx, "#")
		if err != nil {
			return skip("%s; the second principal's SUBSCRIBE: %s", head, errText(err))
		}
		probe := s.topic("wildcard")
		pubCode := byte(0xFF)
		if pub, _ := s.principal5(ctx); pub != nil {
			pubCode, _ = pub.publish(ctx, probe, []byte("mqttsec-scan probe"), false)
		}
		// What the second principal reads under the principal's prefix
		// is a leak; what it reads elsewhere may be its own.
		got := filterMessages(collect(ctx, b.msgs, s.o.DeliveryWait, func(m message) bool { return m.topic == probe }),
			func(m message) bool { return strings.HasPrefix(m.topic, s.o.TopicPrefix) })
		switch {
		case len(got) > 0:
			return fail("%s; %s subscribed to \"#\" too and received %s", head, sec.describe(), describeMessages(got))
		case pubCode >= 0x80:
			return skip("%s; the principal could not publish a probe to %q (0x%02X)", head, probe, pubCode)
		case code >= 0x80:
			return pass("%s, but %s was refused the same SUBSCRIBE (0x%02X): the grant is specific to the principal", head, sec.describe(), code)
		}
		return pass("%s, but a probe the principal published to %q did not reach %s's \"#\" subscription within %s: deliveries are filtered", head, probe, sec.describe(), s.o.DeliveryWait)
	}
	probe := s.root + "/wildcard"
	pubCode := byte(0xFF)
	if pub, _ := s.principal5(ctx); pub != nil {
		pubCode, _ = pub.publish(ctx, probe, []byte("mqttsec-scan probe"), false)
	}
	msgs := filterMessages(collect(ctx, c.msgs, s.o.DeliveryWait, func(m message) bool { return m.topic == probe }), outside)
	switch {
	case len(msgs) > 0:
		return fail("%s and received %s", head, describeMessages(msgs))
	case pubCode < 0x80:
		return pass("%s, but the probe it published to %q was not delivered within %s: deliveries are filtered", head, probe, s.o.DeliveryWait)
	}
	return skip("%s; no delivery could be confirmed: the principal may not publish a probe to %q (give a second principal)", head, probe)
}

func filterMessages(msgs []message, keep func(message) bool) []message {
	var out []message
	for _, m := range msgs {
		if keep(m) {
			out = append(out, m)
		}
	}
	return out
}

var sysReadable = Check{
	ID:          "sys-readable",
	Title:       "$SYS topics readable",
	Severity:    Medium,
	Remediation: "Restrict $SYS/# to administrators (Mosquitto: no read access to $SYS/# in the acl_file, or sys_interval 0; mqttsec: acl.WildcardPolicy refuses $SYS). It discloses the broker version, client counts and traffic.",
	run: func(ctx context.Context, s *scanner) outcome {
		c, why := s.principal5(ctx)
		if c == nil {
			return skip("%s", why)
		}
		code, err := c.subscribe(ctx, "$SYS/#")
		switch {
		case err != nil:
			return skip(`SUBSCRIBE "$SYS/#": %s`, errText(err))
		case code >= 0x80:
			return pass(`%s refused SUBSCRIBE to "$SYS/#" (0x%02X)`, s.o.Principal.describe(), code)
		}
		var version string
		msgs := collect(ctx, c.msgs, s.o.DeliveryWait, func(m message) bool {
			if m.topic == "$SYS/broker/version" {
				version = printable(string(m.payload), 80)
				return true
			}
			return false
		})
		if len(msgs) == 0 {
			return pass(`SUBSCRIBE to "$SYS/#" granted (QoS %d), but no $SYS message arrived within %s`, code, s.o.DeliveryWait)
		}
		ev := fmt.Sprintf(`%s subscribed to "$SYS/#" and received %s`, s.o.Principal.describe(), describeMessages(msgs))
		if version != "" {
			s.broker = version
			ev += fmt.Sprintf("; $SYS/broker/version is %q", version)
		}
		return fail("%s", ev)
	},
}

var publishAnyTopic = Check{
	ID:          "publish-any-topic",
	Title:       "PUBLISH to an arbitrary topic accepted",
	Severity:    High,
	Remediation: "Give each principal write access to its own topics only (Mosquitto: acl_file; mqttsec: acl.Casbin). Otherwise any client can inject commands and fake readings on every topic.",
	run: func(ctx context.Context, s *scanner) outcome {
		return s.publishProbe(ctx, s.root+"/any-topic")
	},
}

var sysPublish = Check{
	ID:          "sys-publish",
	Title:       "PUBLISH to a $SYS topic accepted",
	Severity:    Medium,
	Remediation: "Refuse client publishes to $SYS/ topics: subscribers trust them to come from the broker.",
	run: func(ctx context.Context, s *scanner) outcome {
		return s.publishProbe(ctx, "$SYS/"+s.root+"/probe")
	},
}

// publishProbe publishes to t over MQTT 5 and MQTT 3.1.1 and decides from
// what a subscriber receives (a 3.1.1 PUBACK cannot say "denied"), or, with
// no subscriber allowed, from the MQTT 5 PUBACK.
func (s *scanner) publishProbe(ctx context.Context, t string) outcome {
	who := s.o.Principal.describe()
	obs, why := s.principal5(ctx)
	if obs == nil {
		return skip("%s", why)
	}
	subCode, err := obs.subscribe(ctx, t)
	if err != nil {
		return skip("SUBSCRIBE %q: %s", t, errText(err))
	}
	observing := subCode < 0x80

	p5, why5 := s.principal5(ctx)
	code5, err5 := byte(0xFF), error(nil)
	if p5 != nil {
		code5, err5 = p5.publish(ctx, t, []byte("mqttsec-scan v5"), false)
	}
	p3, why3 := s.principal3(ctx)
	var err3 error
	if p3 != nil {
		err3 = p3.publish(ctx, t, []byte("mqttsec-scan v3"), 1, false)
	}
	if p5 == nil && p3 == nil {
		return skip("%s; %s", why5, why3)
	}
	v5 := "MQTT 5: " + why5
	if p5 != nil {
		v5 = fmt.Sprintf("MQTT 5 PUBACK 0x%02X", code5)
		if err5 != nil {
			v5 = "MQTT 5: " + errText(err5)
			if errors.Is(err5, context.DeadlineExceeded) && !p5.closed() && ctx.Err() == nil {
				v5 = fmt.Sprintf("MQTT 5: no PUBACK within %s (dropped without an answer)", s.opWait().Round(100*time.Millisecond))
			}
		}
	}
	v3 := "MQTT 3.1.1: " + why3
	if p3 != nil {
		v3 = "MQTT 3.1.1 " + pub3Text(err3)
		if errors.Is(err3, context.DeadlineExceeded) && !p3.closed() && ctx.Err() == nil {
			v3 = fmt.Sprintf("MQTT 3.1.1: no PUBACK within %s (dropped without an answer)", s.opWait().Round(100*time.Millisecond))
		}
	}
	if !observing {
		if p5 != nil && err5 == nil && code5 < 0x80 {
			return fail("%s published to %q: %s (accepted; no subscriber could confirm delivery: SUBACK 0x%02X)", who, t, v5, subCode)
		}
		return pass("%s published to %q: %s; %s (no subscriber could confirm delivery)", who, t, v5, v3)
	}
	var got []string
	collect(ctx, obs.msgs, s.o.DeliveryWait, func(m message) bool {
		if m.topic == t {
			got = append(got, strings.TrimPrefix(string(m.payload), "mqttsec-scan "))
		}
		return len(got) == 2
	})
	if len(got) > 0 {
		return fail("%s published to %q and a subscriber received it (%s delivered; %s; %s)", who, t, strings.Join(got, " and "), v5, v3)
	}
	return pass("%s published to %q: %s; %s; a subscriber received nothing within %s", who, t, v5, v3, s.o.DeliveryWait)
}

var publishInvalidTopic = Check{
	ID:          "publish-invalid-topic",
	Title:       "PUBLISH with a wildcard or empty topic accepted",
	Severity:    Medium,
	Remediation: "Close the connection of a client that publishes to a topic name with + or #, or to an empty topic (MQTT-3.3.2-2, MQTT-4.7.3-1): such messages confuse subscribers and ACL matching.",
	run: func(ctx context.Context, s *scanner) outcome {
		var accepted, refused []string
		for _, t := range []string{s.root + "/+/wildcard", s.root + "/#", ""} {
			c, why := s.principal3(ctx)
			if c == nil {
				return skip("%s", why)
			}
			wctx, cancel := context.WithTimeout(ctx, s.o.DeliveryWait)
			err := c.publish(wctx, t, []byte("mqttsec-scan"), 1, false)
			if err == nil {
				err = c.ping(wctx)
			}
			cancel()
			switch {
			case err == nil:
				accepted = append(accepted, fmt.Sprintf("%q (PUBACK, connection kept)", t))
			case c.closed():
				refused = append(refused, fmt.Sprintf("%q (connection closed)", t))
			default:
				refused = append(refused, fmt.Sprintf("%q (ignored: %s)", t, errText(err)))
			}
			_ = c.Close()
		}
		if len(accepted) > 0 {
			return fail("MQTT 3.1.1 PUBLISH accepted to %s", strings.Join(accepted, ", "))
		}
		return pass("MQTT 3.1.1 PUBLISH to %s", strings.Join(refused, ", "))
	},
}

// collect gathers messages from msgs for up to d, or until done returns
// true for one of them.
func collect(ctx context.Context, msgs <-chan message, d time.Duration, done func(message) bool) []message {
	t := time.NewTimer(d)
	defer t.Stop()
	var out []message
	for {
		select {
		case m := <-msgs:
			out = append(out, m)
			if done(m) || len(out) >= 1000 {
				return out
			}
		case <-t.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
}

// describeMessages summarizes received messages by topic, never by
// payload.
func describeMessages(msgs []message) string {
	seen := map[string]bool{}
	var examples []string
	for _, m := range msgs {
		if !seen[m.topic] {
			seen[m.topic] = true
			if len(examples) < 3 {
				examples = append(examples, fmt.Sprintf("%q", printable(m.topic, 80)))
			}
		}
	}
	return fmt.Sprintf("%d message(s) on %d topic(s), e.g. %s", len(msgs), len(seen), strings.Join(examples, ", "))
}

// printable truncates s to n runes and replaces control characters, so
// that what a broker sends cannot forge lines in a report.
func printable(s string, n int) string {
	var b strings.Builder
	for i, r := range s {
		if i >= n {
			b.WriteString("...")
			break
		}
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			r = '?'
		}
		b.WriteRune(r)
	}
	return b.String()
}
