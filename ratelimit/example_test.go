package ratelimit_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/ratelimit"
)

// The secure wiring: the Limiter with its defaults, the Gate in front of the
// password verification, and the Guard attached to the ban list so that a
// ban disconnects the clients it covers.
func Example() {
	// A password file written by mosquitto_passwd (alice's password is
	// "secret1").
	const file = `alice:$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==
`
	users, err := auth.ParsePasswordFile(strings.NewReader(file), "passwd")
	if err != nil {
		log.Fatal(err)
	}
	passwords := auth.NewPasswords(users, auth.PasswordsConfig{})

	lim, err := ratelimit.New(ratelimit.Config{})
	if err != nil {
		log.Fatal(err)
	}
	g := mqttsec.New(mqttsec.Config{
		Authenticator: ratelimit.NewGate(passwords, ratelimit.GateConfig{}),
		Authorizer:    mqttsec.AuthorizerFunc(func(context.Context, *mqttsec.Client, mqttsec.Access, string) error { return nil }),
		Limiter:       lim,
		Events:        mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	lim.Bans().Attach(g)

	cl := mqttsec.Client{ID: "sensor-1", Username: "alice", RemoteAddr: "192.0.2.7:50000", Protocol: 5}
	for _, pw := range []string{"guess 1", "guess 2", "secret1"} {
		_, err := g.Connect(context.Background(), cl, mqttsec.Credentials{Password: []byte(pw)}, nil)
		fmt.Println(mqttsec.CodeOf(err))
	}
	// Output:
	// 0x86 bad user name or password
	// 0x86 bad user name or password
	// 0x00 success
}

// The administrator's API: a ban by address prefix, kept in a file.
func ExampleBans() {
	dir, err := os.MkdirTemp("", "bans")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bans.txt")

	bans := ratelimit.NewBans(ratelimit.BansConfig{Store: ratelimit.BanFile(path)})
	if err := bans.Load(context.Background()); err != nil {
		log.Fatal(err)
	}
	until := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := bans.Add(context.Background(), ratelimit.Ban{Kind: ratelimit.BanAddr, Value: "198.51.100.0/24", Until: until, Reason: "scanner"}); err != nil {
		log.Fatal(err)
	}
	if err := bans.Add(context.Background(), ratelimit.Ban{Kind: ratelimit.BanClientID, Value: "dev-17"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(bans.Check(&mqttsec.Client{ID: "x", RemoteAddr: "198.51.100.9:1883"}))
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(data))
	// Output:
	// mqttsec: banned: address 198.51.100.0/24
	// # mqttsec ban list: kind value until [reason]
	// client_id "dev-17" never
	// ip 198.51.100.0/24 2099-01-01T00:00:00Z "scanner"
}
