package scan

import (
	"context"
	"fmt"
	"time"
)

// Check is one security check: a stable ID, what it looks for, how bad a
// failure is and how to fix it. [Checks] lists them; [Run] runs them.
// A Check is an immutable value, safe for concurrent use.
type Check struct {
	// ID is stable across versions: reports, suppressions and CI rules
	// may key on it.
	ID string
	// Title says what the check looks for.
	Title string
	// Severity is how bad a failure is.
	Severity Severity
	// Remediation says how to fix a failure.
	Remediation string
	// Intrusive checks may lock accounts or load the broker; they run
	// only with Options.Intrusive.
	Intrusive bool

	run func(ctx context.Context, s *scanner) outcome
	// wait, when set, gives the check a longer deadline than
	// Options.CheckTimeout.
	wait func(s *scanner) time.Duration
}

// outcome is what a check found.
type outcome struct {
	status   Status
	evidence string
}

func pass(format string, args ...any) outcome {
	return outcome{Pass, fmt.Sprintf(format, args...)}
}

func fail(format string, args ...any) outcome {
	return outcome{Fail, fmt.Sprintf(format, args...)}
}

func skip(format string, args ...any) outcome {
	return outcome{Skip, fmt.Sprintf(format, args...)}
}

// Checks returns the checks [Run] runs, in the order it runs them: TLS,
// listeners, authentication, authorization, checks between principals,
// then protocol and resource limits.
func Checks() []Check {
	return []Check{
		tlsVersion, tlsCipher, tlsCertificate, tlsCertificateExpiry, tlsClientCertificate,
		plaintextListener,
		anonymousConnect, emptyPassword, anyCredentials, defaultCredentials,
		wildcardSubscribe, sysReadable, publishAnyTopic, sysPublish, publishInvalidTopic,
		retainedPoisoning, willACLBypass, clientIDTakeover,
		clientIDEmpty, clientIDOversized, payloadOversized, connectRate, v3ReturnCode, idleConnection,
	}
}
