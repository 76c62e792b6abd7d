package scan

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

var plaintextListener = Check{
	ID:          "plaintext-listener",
	Title:       "Plaintext MQTT listener reachable",
	Severity:    High,
	Remediation: "Serve MQTT over TLS only (port 8883); bind any plaintext listener to 127.0.0.1 or a Unix socket. Without TLS, passwords, tokens and messages cross the network in clear and can be altered.",
	run: func(ctx context.Context, s *scanner) outcome {
		if !s.t.tls {
			a := s.try3(ctx, connOpts{clientID: s.clientID()})
			if a.connack {
				return fail("%s answered an MQTT CONNECT without TLS (%s)", s.t.addr, a.text)
			}
			return skip("%s accepted a TCP connection but answered no MQTT CONNECT: %s", s.t.addr, a.text)
		}
		addrs := s.o.PlaintextAddrs
		if addrs == nil {
			if _, port, _ := net.SplitHostPort(s.t.addr); port != "1883" {
				addrs = []string{net.JoinHostPort(s.t.host, "1883")}
			}
		}
		if len(addrs) == 0 {
			return skip("no plaintext address to probe")
		}
		var open, shut []string
		for _, addr := range addrs {
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			var d net.Dialer
			nc, err := d.DialContext(dctx, "tcp", addr)
			if err != nil {
				cancel()
				shut = append(shut, fmt.Sprintf("%s (%s)", addr, errText(err)))
				continue
			}
			c, code, err := s.connect3(dctx, newLimitConn(nc, s.o.MaxPacketSize), connOpts{clientID: s.clientID()})
			cancel()
			switch {
			case err != nil:
				shut = append(shut, fmt.Sprintf("%s (open, but no MQTT answer: %s)", addr, errText(err)))
			default:
				if c != nil {
					_ = c.Close()
				}
				open = append(open, fmt.Sprintf("%s (CONNACK return code %d)", addr, code))
			}
		}
		if len(open) > 0 {
			return fail("MQTT without TLS answered on %s", strings.Join(open, ", "))
		}
		return pass("no plaintext MQTT on %s", strings.Join(shut, ", "))
	},
}

var anonymousConnect = Check{
	ID:          "anonymous-connect",
	Title:       "Anonymous CONNECT accepted",
	Severity:    High,
	Remediation: "Require authentication (Mosquitto: allow_anonymous false with password_file or a plugin; mqttsec: no auth.Anonymous in the chain).",
	run: func(ctx context.Context, s *scanner) outcome {
		a5 := s.try5(ctx, connOpts{clientID: s.clientID()})
		a3 := s.try3(ctx, connOpts{clientID: s.clientID()})
		s.anonymousOK = a5.accepted || a3.accepted
		ev := "without user name or password: " + a5.text + "; " + a3.text
		switch {
		case s.anonymousOK:
			return fail("%s", ev)
		case !a5.decided && !a3.decided:
			return skip("%s", ev)
		}
		return pass("%s", ev)
	},
}

var emptyPassword = Check{
	ID:          "empty-password",
	Title:       "Empty password accepted",
	Severity:    High,
	Remediation: "Check passwords for every user name (Mosquitto: password_file and allow_anonymous false; never accept an empty password).",
	run: func(ctx context.Context, s *scanner) outcome {
		user := s.o.Principal.Username
		if user == "" {
			user = "mqttsec-scan-" + s.id
		}
		o := connOpts{user: user, userFlag: true, pass: []byte{}, passFlag: true}
		o.clientID = s.clientID()
		a5 := s.try5(ctx, o)
		o.clientID = s.clientID()
		a3 := s.try3(ctx, o)
		ev := fmt.Sprintf("user %q with an empty password: %s; %s", user, a5.text, a3.text)
		switch {
		case a5.accepted || a3.accepted:
			return fail("%s", ev)
		case !a5.decided && !a3.decided:
			return skip("%s", ev)
		}
		return pass("%s", ev)
	},
}

var anyCredentials = Check{
	ID:          "any-credentials",
	Title:       "Made-up user name and password accepted",
	Severity:    High,
	Remediation: "Verify credentials against a password file, tokens or certificates; a broker that admits any user name and password has no authentication.",
	run: func(ctx context.Context, s *scanner) outcome {
		var b [12]byte
		_, _ = rand.Read(b[:])
		user := "mqttsec-scan-" + s.id
		o := connOpts{user: user, userFlag: true, pass: []byte(hex.EncodeToString(b[:])), passFlag: true}
		o.clientID = s.clientID()
		a5 := s.try5(ctx, o)
		o.clientID = s.clientID()
		a3 := s.try3(ctx, o)
		s.anyCreds = a5.accepted || a3.accepted
		ev := fmt.Sprintf("made-up user %q with a random password: %s; %s", user, a5.text, a3.text)
		switch {
		case s.anyCreds:
			return fail("%s", ev)
		case !a5.decided && !a3.decided:
			return skip("%s", ev)
		}
		return pass("%s", ev)
	},
}

var defaultCredentials = Check{
	ID:          "default-credentials",
	Title:       "Default credentials accepted",
	Severity:    High,
	Remediation: "Remove default and example accounts; give every user a unique, long, random password (mqttsec passwd checks strength).",
	Intrusive:   true,
	wait: func(s *scanner) time.Duration {
		return time.Duration(len(s.o.DefaultCredentials))*s.o.CredentialInterval + s.o.CheckTimeout
	},
	run: func(ctx context.Context, s *scanner) outcome {
		if s.anyCreds {
			return skip("the broker admits any credentials (see any-credentials)")
		}
		list := s.o.DefaultCredentials
		for i, c := range list {
			if i > 0 {
				select {
				case <-time.After(s.o.CredentialInterval):
				case <-ctx.Done():
					return skip("tried %d of %d entries before the deadline; none accepted", i, len(list))
				}
			}
			o := connOpts{clientID: s.clientID(), user: c.Username, userFlag: c.Username != "", pass: c.Password, passFlag: c.Password != nil}
			a := s.try3(ctx, o)
			if a.accepted {
				// The password is a published default, but it is still
				// not repeated here.
				return fail("user %q with its well-known default password (entry %d of the list) was accepted after %d attempts", c.Username, i+1, i+1)
			}
			if !a.decided {
				return skip("attempt %d of %d undecided: %s", i+1, len(list), a.text)
			}
		}
		return pass("none of %d default user name and password pairs was accepted (one attempt every %s)", len(list), s.o.CredentialInterval)
	},
}

// attempt is the outcome of one CONNECT probe.
type attempt struct {
	accepted bool   // CONNACK success
	decided  bool   // the broker answered: CONNACK, a TLS refusal or a close
	connack  bool   // a CONNACK came, whatever its code
	text     string // what happened, for evidence
}

// try5 sends an MQTT 5 CONNECT with o over a connection that does not
// verify the server (o must carry nothing secret) and closes it.
func (s *scanner) try5(ctx context.Context, o connOpts) attempt {
	nc, err := s.dial(ctx, nil)
	if err != nil {
		return refusedAt("MQTT 5", err)
	}
	c, ack, err := s.connect5(ctx, nc, o)
	if err == nil {
		_ = c.Close()
		return attempt{accepted: true, decided: true, connack: true, text: "MQTT 5 CONNACK 0x00 (accepted)"}
	}
	if ack != nil {
		return attempt{decided: true, connack: true, text: fmt.Sprintf("MQTT 5 CONNACK 0x%02X (refused)", ack.ReasonCode)}
	}
	return refusedAt("MQTT 5", err)
}

// try3 is try5 for MQTT 3.1.1.
func (s *scanner) try3(ctx context.Context, o connOpts) attempt {
	nc, err := s.dial(ctx, nil)
	if err != nil {
		return refusedAt("MQTT 3.1.1", err)
	}
	c, code, err := s.connect3(ctx, nc, o)
	if err == nil && code == 0 {
		_ = c.Close()
		return attempt{accepted: true, decided: true, connack: true, text: "MQTT 3.1.1 return code 0 (accepted)"}
	}
	if err == nil {
		return attempt{decided: true, connack: true, text: fmt.Sprintf("MQTT 3.1.1 return code %d (refused%s)", code, v3Invalid(code))}
	}
	return refusedAt("MQTT 3.1.1", err)
}

// refusedAt classifies a CONNECT that got no CONNACK: a TLS refusal or a
// closed connection is the broker's answer; a timeout or a dial error
// decides nothing.
func refusedAt(proto string, err error) attempt {
	var ae tls.AlertError
	var re *net.OpError
	switch {
	case errors.As(err, &ae), errors.Is(err, errClosed), isEOF(err):
		return attempt{decided: true, text: fmt.Sprintf("%s refused before CONNACK (%s)", proto, errText(err))}
	case errors.As(err, &re) && re.Op == "read":
		return attempt{decided: true, text: fmt.Sprintf("%s refused before CONNACK (%s)", proto, errText(err))}
	}
	return attempt{text: fmt.Sprintf("%s undecided (%s)", proto, errText(err))}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// v3Invalid notes a return code that MQTT 3.1.1 does not define.
func v3Invalid(code byte) string {
	if code > 5 {
		return "; not an MQTT 3.1.1 return code"
	}
	return ""
}
