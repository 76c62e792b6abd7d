package scan_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/mqttsec/mqttsec/scan"
)

// ExampleChecks lists the checks with their stable IDs and severities;
// reports, suppressions and CI rules key on the IDs.
func ExampleChecks() {
	for _, c := range scan.Checks() {
		if c.Severity == scan.High {
			fmt.Println(c.ID)
		}
	}
	// Output:
	// tls-certificate
	// plaintext-listener
	// anonymous-connect
	// empty-password
	// any-credentials
	// default-credentials
	// wildcard-subscribe
	// publish-any-topic
	// retained-poisoning
	// will-acl-bypass
	// clientid-takeover
}

// ExampleRun scans a broker over TLS as user alice, with bob as the second
// principal, trusting only the broker's own CA, and prints the failed
// checks of medium or high severity (a CI job would fail on them).
func ExampleRun() {
	caPEM, err := os.ReadFile("ca.pem")
	if err != nil {
		fmt.Println(err)
		return
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		fmt.Println("ca.pem: no certificate")
		return
	}
	rep, err := scan.Run(context.Background(), "mqtts://broker.example.com:8883", scan.Options{
		Principal:   scan.Credentials{Username: "alice", Password: []byte(os.Getenv("ALICE_PASSWORD"))},
		Second:      &scan.Credentials{Username: "bob", Password: []byte(os.Getenv("BOB_PASSWORD"))},
		TopicPrefix: "devices/alice/",
		TLS:         &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range rep.Failed(scan.Medium) {
		fmt.Printf("%s (%s): %s\n", f.ID, f.Severity, f.Evidence)
	}
}
