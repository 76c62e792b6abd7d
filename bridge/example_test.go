package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/bridge"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// ExampleStart runs a bridge from a site broker on the loopback address to
// a cloud broker over TLS, with the password read from a file.
func ExampleStart() {
	cfg := bridge.Config{
		Name:         "cloud",
		Remote:       "mqtts://broker.example.com:8883",
		TLS:          tlsconf.Config{CAFile: "ca.pem", CertFile: "site.pem", KeyFile: "site-key.pem"},
		Username:     "site1",
		PasswordFile: "bridge.pass", // chmod 600
		ClientID:     "site1-bridge",
		StatusTopic:  "bridges/cloud/state",
		Topics: []bridge.Mapping{
			{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "site1/"},
			{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "site1/"},
		},
	}
	local := bridge.Local{URL: "mqtt://127.0.0.1:1883", Username: "bridge", Password: []byte(os.Getenv("LOCAL_PASSWORD"))}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	b, err := bridge.Start(ctx, cfg, local, bridge.WithEvents(mqttsec.SlogSink(logger)))
	if err != nil {
		log.Fatal(err) // invalid or insecure: nothing was connected
	}
	<-b.Done() // Ctrl-C: the bridge disconnects and stops
}

// ExampleParseConfigs decodes the bridges of a configuration file. Errors
// name the bridge and, for unknown keys, the line.
func ExampleParseConfigs() {
	_, err := bridge.ParseConfigs([]byte(`
bridges:
  - name: cloud
    remote: "mqtts://broker.example.com:8883"
    client_id: site1-bridge
    pasword_file: bridge.pass
    topics:
      - { pattern: "sensors/#", direction: out, qos: 1, remote_prefix: "site1/" }
`))
	fmt.Println(err)

	_, err = bridge.ParseConfigs([]byte(`
bridges:
  - name: cloud
    remote: "mqtt://broker.example.com"
    client_id: site1-bridge
    topics:
      - { pattern: "#", direction: both, qos: 1, remote_prefix: "site1/+/" }
`))
	fmt.Println(errors.Is(err, bridge.ErrInsecure))
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Println(line)
	}
	// Output:
	// bridge: invalid configuration: bridge "cloud": line 6: unknown key "pasword_file" in the bridge
	// true
	// bridge: insecure configuration: bridge "cloud": remote "mqtt://broker.example.com" is plaintext to host "broker.example.com": messages and credentials would cross the network in clear; use mqtts:// or wss://
	// bridge: invalid configuration: bridge "cloud": topics[0]: remote_prefix "site1/+/": a prefix must not contain the wildcards '+' or '#'
}

// ExampleParseMosquitto imports the bridge of a mosquitto.conf and lists
// its weaknesses.
func ExampleParseMosquitto() {
	conf := `connection cloud
address broker.example.com:8883
bridge_cafile /etc/mosquitto/ca.pem
bridge_insecure true
bridge_protocol_version mqttv50
remote_clientid site1-bridge
remote_username site1
remote_password hunter2
topic sensors/# out 1 "" site1/
`
	cfgs, findings, err := bridge.ParseMosquitto(strings.NewReader(conf))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfgs[0].Remote, cfgs[0].ClientID, cfgs[0].Topics[0].RemotePrefix)
	for _, f := range findings {
		fmt.Println(f.Line, f.ID, f.Severity)
	}
	// Output:
	// mqtts://broker.example.com:8883 site1-bridge site1/
	// 4 bridge-insecure high
	// 8 bridge-plaintext-password high
}
