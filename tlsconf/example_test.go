package tlsconf_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// A broker listener with the secure defaults, from a development CA.
func ExampleConfig_Server() {
	dir, _ := os.MkdirTemp("", "pki")
	defer os.RemoveAll(dir)
	ca, err := tlsconf.CreateDevCA(dir)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := ca.ServerConfig().Server()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tls.VersionName(srv.MinVersion), srv.NextProtos, srv.ClientAuth)
	// Use it with tls.Listen, or as a mochi listeners.Config TLSConfig.
	// Output: TLS 1.2 [mqtt] VerifyClientCertIfGiven
}

// A device connecting with paho.golang and a client certificate.
func ExampleConfig_Client() {
	c := tlsconf.Config{
		CAFile:   "/etc/mqtt/ca.pem",
		CertFile: "/etc/mqtt/device.pem",
		KeyFile:  "/etc/mqtt/device.key",
	}
	tlsCfg, err := c.Client()
	if err != nil {
		log.Fatal(err)
	}
	conn, err := tls.Dial("tcp", "broker.example:8883", tlsCfg)
	if err != nil {
		log.Fatal(err)
	}
	client := paho.NewClient(paho.ClientConfig{Conn: conn})
	if _, err := client.Connect(context.Background(), &paho.Connect{ClientID: "device-1", KeepAlive: 30}); err != nil {
		log.Fatal(err)
	}
}

// A listener whose certificate, CA bundle and CRL follow the files, with
// reloads and failures logged. In a broker, give the mqttsec.Guard as
// Events instead: it logs them too, and disconnects the clients a new CRL
// revokes (see auth.X509Config.Verifier).
func ExampleNewReloader() {
	dir, _ := os.MkdirTemp("", "pki")
	defer os.RemoveAll(dir)
	ca, _ := tlsconf.CreateDevCA(dir)
	crl, _ := ca.WriteCRL() // nothing revoked yet

	c := ca.ServerConfig()
	c.ClientAuth = tlsconf.ClientAuthRequire
	c.CRLFiles = []string{crl}
	c.Events = mqttsec.SlogSink(slog.Default())
	r, err := tlsconf.NewReloader(c)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	srv, _ := r.Server()

	// Revoke a device: the next handshake of that device is refused.
	dev, _ := ca.IssueClient("device-9")
	if _, err := ca.WriteCRL(dev); err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Reload(), srv.ClientAuth)
	// Output: <nil> RequireAndVerifyClientCert
}

// Configuration from YAML: unknown keys and insecure values are errors.
func ExampleParseConfig() {
	_, err := tlsconf.ParseConfig([]byte("min_version: \"1.1\"\n"))
	fmt.Println(err)
	c, err := tlsconf.ParseConfig([]byte(`
cert_file: /etc/mqtt/server.pem
key_file: /etc/mqtt/server.key
ca_file: /etc/mqtt/clients-ca.pem
client_auth: verify-if-given
min_version: "1.3"
`))
	fmt.Println(c.ClientAuth, c.MinVersion, err)
	// Output:
	// tlsconf: invalid configuration: min_version 1.1 needs insecure_allow_tls11
	// verify-if-given 1.3 <nil>
}

// Pin a bridge to its remote broker's CA key.
func ExampleSPKIPin() {
	dir, _ := os.MkdirTemp("", "pki")
	defer os.RemoveAll(dir)
	ca, _ := tlsconf.CreateDevCA(dir)
	c := ca.ClientConfig("")
	c.PinnedSPKI = []string{tlsconf.SPKIPin(ca.Certificate().RawSubjectPublicKeyInfo)}
	_, err := c.Client()
	fmt.Println(err, filepath.Base(c.CAFile))
	// Output: <nil> ca.pem
}
