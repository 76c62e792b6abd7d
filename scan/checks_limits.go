package scan

import (
	"context"
	"fmt"
	"strings"
	"time"
)

var clientIDEmpty = Check{
	ID:          "clientid-empty",
	Title:       "Empty client ID accepted for a persistent session",
	Severity:    Low,
	Remediation: "Refuse an empty client ID with clean session 0 (MQTT-3.1.3-8: return code 2): the broker cannot know whose session it is.",
	run: func(ctx context.Context, s *scanner) outcome {
		o := s.connOptsFor(&s.o.Principal)
		o.clientID, o.keep = "", true
		c, code, err := s.v3(ctx, &s.o.Principal, o)
		switch {
		case err != nil:
			a := refusedAt("MQTT 3.1.1", err)
			if a.decided {
				return pass("%s", a.text)
			}
			return skip("%s", a.text)
		case code != 0:
			return pass("MQTT 3.1.1 CONNECT with an empty client ID and clean session 0: return code %d", code)
		}
		_ = c.Close()
		return fail("MQTT 3.1.1 CONNECT of %s with an empty client ID and clean session 0 was accepted", s.o.Principal.describe())
	},
}

var clientIDOversized = Check{
	ID:          "clientid-oversized",
	Title:       "Oversized client ID accepted",
	Severity:    Low,
	Remediation: "Limit client IDs to a sane length (mqttsec: the client-ID policy; 23 bytes is the MQTT 3.1.1 minimum every broker must accept). A 64 KiB ID multiplies memory, logs and registry keys.",
	run: func(ctx context.Context, s *scanner) outcome {
		o := s.connOptsFor(&s.o.Principal)
		o.clientID += "-" + strings.Repeat("x", 65535-len(o.clientID)-1)
		c, code, err := s.v3(ctx, &s.o.Principal, o)
		switch {
		case err != nil:
			a := refusedAt("MQTT 3.1.1", err)
			if a.decided {
				return pass("65535-byte client ID: %s", a.text)
			}
			return skip("65535-byte client ID: %s", a.text)
		case code != 0:
			return pass("MQTT 3.1.1 CONNECT with a 65535-byte client ID: return code %d", code)
		}
		_ = c.Close()
		return fail("MQTT 3.1.1 CONNECT of %s with a 65535-byte client ID was accepted", s.o.Principal.describe())
	},
}

var payloadOversized = Check{
	ID:          "payload-oversized",
	Title:       "Oversized payload accepted",
	Severity:    Medium,
	Remediation: "Bound the packet size to what devices need (Mosquitto: message_size_limit or max_packet_size; mochi: Capabilities.MaximumPacketSize; mqttsec: MaxPayload). Without a bound one client can make the broker buffer hundreds of megabytes per message and subscriber.",
	run: func(ctx context.Context, s *scanner) outcome {
		c, why := s.principal5(ctx)
		if c == nil {
			return skip("%s", why)
		}
		n := s.o.OversizePayload
		if mps := c.maxPacketSize(); mps != 0 && int64(mps) <= int64(n) {
			return pass("CONNACK announces a Maximum Packet Size of %d bytes", mps)
		}
		t := s.topic("oversized")
		code, err := c.publish(ctx, t, make([]byte, n), false)
		switch {
		case err != nil && c.closed():
			if r := c.reason.Load(); r >= 0 {
				return pass("a %d-byte PUBLISH ended the connection (DISCONNECT 0x%02X)", n, r)
			}
			return pass("a %d-byte PUBLISH ended the connection", n)
		case err != nil:
			return skip("a %d-byte PUBLISH: %s", n, errText(err))
		case code == 0x87:
			return skip("%s may not publish to %q (0x87): set TopicPrefix to a prefix it owns", s.o.Principal.describe(), t)
		case code >= 0x80:
			return pass("a %d-byte PUBLISH was refused (PUBACK 0x%02X)", n, code)
		}
		return fail("a %d-byte PUBLISH to %q was accepted (PUBACK 0x%02X) and no Maximum Packet Size is announced", n, t, code)
	},
}

var connectRate = Check{
	ID:          "connect-rate",
	Title:       "No CONNECT rate limit",
	Severity:    Medium,
	Remediation: "Limit CONNECTs per source address and failed logins per user (mqttsec: ratelimit; Mosquitto: a firewall rate limit or a plugin). Unlimited CONNECTs make password guessing and connection floods cheap.",
	Intrusive:   true,
	run: func(ctx context.Context, s *scanner) outcome {
		n := s.o.ConnectAttempts
		start := time.Now()
		for i := range n {
			c, code, err := s.v3(ctx, &s.o.Principal, s.connOptsFor(&s.o.Principal))
			switch {
			case err == nil && code == 0:
				_ = c.Close()
				s.conns = s.conns[:len(s.conns)-1]
				continue
			case i == 0:
				return skip("%s cannot connect: %s", s.o.Principal.describe(), connackText3(code, err))
			case ctx.Err() != nil:
				return skip("%d CONNECTs accepted before the deadline (%s)", i, time.Since(start).Round(time.Millisecond))
			}
			return pass("CONNECT %d of %d refused after %s: %s", i+1, n, time.Since(start).Round(time.Millisecond), connackText3(code, err))
		}
		return fail("all %d CONNECTs of %s were accepted within %s", n, s.o.Principal.describe(), time.Since(start).Round(time.Millisecond))
	},
}

var v3ReturnCode = Check{
	ID:          "v3-return-code",
	Title:       "MQTT 3.1.1 CONNACK with an undefined return code",
	Severity:    Low,
	Remediation: "Answer MQTT 3.1.1 clients with MQTT 3.1.1 return codes (1 to 5). An MQTT 5 reason code such as 128 or 135 in a 3.1.1 CONNACK is undefined: clients may misreport or mishandle the refusal.",
	run: func(ctx context.Context, s *scanner) outcome {
		switch {
		case len(s.badV3) > 0:
			return fail("of %d MQTT 3.1.1 CONNACKs in this scan, these used codes 3.1.1 does not define: %s", s.v3Acks, strings.Join(s.badV3, "; "))
		case s.v3Acks == 0:
			return skip("no MQTT 3.1.1 CONNACK was received")
		}
		return pass("all %d MQTT 3.1.1 CONNACKs in this scan used defined return codes", s.v3Acks)
	},
}

var idleConnection = Check{
	ID:          "idle-connection",
	Title:       "Socket without CONNECT left open",
	Severity:    Medium,
	Remediation: "Close connections that do not complete the TLS handshake and CONNECT within a few seconds (mqttsec: mochi.Harden; Mosquitto has no such timeout: put a proxy or firewall in front). Idle sockets exhaust file descriptors at no cost to an attacker.",
	wait: func(s *scanner) time.Duration {
		if s.idle == nil {
			return 0
		}
		return time.Until(s.idle.opened.Add(s.o.IdleWait)) + time.Second
	},
	run: func(ctx context.Context, s *scanner) outcome {
		p := s.idle
		if p == nil {
			return skip("no idle socket was opened")
		}
		if p.err != nil {
			return skip("could not open the idle socket: %s", errText(p.err))
		}
		t := time.NewTimer(time.Until(p.opened.Add(s.o.IdleWait)))
		defer t.Stop()
		select {
		case <-p.ended:
		case <-t.C:
		case <-ctx.Done():
		}
		p.mu.Lock()
		closedAt, gotData := p.closedAt, p.gotData
		p.mu.Unlock()
		if closedAt.IsZero() {
			return fail("a socket that sent nothing was still open after %s", time.Since(p.opened).Round(time.Second))
		}
		ev := fmt.Sprintf("a socket that sent nothing was closed after %s", closedAt.Sub(p.opened).Round(100*time.Millisecond))
		if gotData {
			ev += " (the broker sent data first)"
		}
		return pass("%s", ev)
	},
}
