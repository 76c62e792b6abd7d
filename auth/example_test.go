package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
	"github.com/mqttsec/mqttsec/tlsconf"
)

// A password file written by mosquitto_passwd works unchanged.
func ExampleParsePasswordFile() {
	const file = `# written by mosquitto_passwd -b passwd alice secret1
alice:$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==
`
	f, err := auth.ParsePasswordFile(strings.NewReader(file), "passwd")
	if err != nil {
		fmt.Println(err)
		return
	}
	p := auth.NewPasswords(f, auth.PasswordsConfig{})
	for _, pw := range []string{"secret1", "guess"} {
		id, err := p.Authenticate(context.Background(), &mqttsec.Client{ID: "c1", Username: "alice"},
			mqttsec.Credentials{Password: []byte(pw)})
		fmt.Println(id != nil, mqttsec.CodeOf(err))
	}
	// Output:
	// true 0x00 success
	// false 0x86 bad user name or password
}

// Errors name the line and never quote the hash.
func ExampleParseError() {
	_, err := auth.ParsePasswordFile(strings.NewReader("alice:$7$101$x$y\n"), "passwd")
	var pe *auth.ParseError
	fmt.Println(errors.As(err, &pe), pe.Line, errors.Is(err, auth.ErrMalformedHash))
	// Output: true 1 true
}

// The first authenticator that does not abstain decides; nothing is
// anonymous unless Anonymous is in the chain.
func ExampleChain() {
	passwords := auth.NewPasswords(auth.NewPasswordFile(), auth.PasswordsConfig{})
	strict := auth.Chain(passwords)
	open := auth.Chain(passwords, auth.Anonymous())
	cl := &mqttsec.Client{ID: "c1"} // no user name, no password
	_, err := strict.Authenticate(context.Background(), cl, mqttsec.Credentials{})
	fmt.Println(mqttsec.CodeOf(err))
	id, _ := open.Authenticate(context.Background(), cl, mqttsec.Credentials{})
	fmt.Println(id.Method)
	// Output:
	// 0x86 bad user name or password
	// anonymous
}

func ExamplePolicy_Check() {
	var p auth.Policy // the recommended defaults
	fmt.Println(p.Check("alice", []byte("password123")))
	fmt.Println(p.Check("alice", []byte("correct horse battery staple")))
	// Output:
	// auth: weak password: shorter than 12 characters
	// <nil>
}

// The secure wiring of a password file: the Guard is the Watcher's event
// sink, so a user removed from the file (or given a new password) is
// disconnected as soon as the file changes.
func ExampleWatchPasswordFile() {
	dir, err := os.MkdirTemp("", "passwd")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "passwd")
	// Written by mosquitto_passwd -c -b passwd alice secret1.
	const file = "alice:$7$101$552PqRKIBes5embQ$5YZQ0uPohXxx8ISETXjeQ6wTI0X9JzDmSfsFQ1LhZG2p9HrHwB6G1ynYpVO/uieQS+YXHxsUDDjs9/znU8nrwQ==\n"
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		log.Fatal(err)
	}

	passwords := auth.NewPasswords(nil, auth.PasswordsConfig{})
	guard := mqttsec.New(mqttsec.Config{Authenticator: passwords /* , Authorizer: ... */})
	w, err := auth.WatchPasswordFile(path, passwords, auth.WatchOptions{Events: guard})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	s, err := guard.Connect(context.Background(), mqttsec.Client{ID: "alice-1", Username: "alice"},
		mqttsec.Credentials{Password: []byte("secret1")}, nil)
	if err != nil {
		log.Fatal(err)
	}
	// An administrator removes alice (mqttsec passwd -D passwd alice).
	f, err := auth.LoadPasswordFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Delete("alice"); err != nil {
		log.Fatal(err)
	}
	if err := f.WriteFile(path); err != nil {
		log.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // the Guard revalidates in the background
	}
	fmt.Println(mqttsec.CodeOf(s.Err()))
	// Output: 0x87 not authorized
}

// A JWT authenticator names the audience it accepts (this broker) and, with
// public keys or a JWK Set, the issuer: a token the identity provider
// minted for another of its services does not log in.
func ExampleNewJWT() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	_, err = auth.NewJWT(context.Background(), auth.JWTConfig{Algorithms: []string{"ES256"},
		PublicKeys: []crypto.PublicKey{key.Public()}})
	fmt.Println(errors.Is(err, auth.ErrConfig))

	tokens, err := auth.NewJWT(context.Background(), auth.JWTConfig{
		Algorithms: []string{"ES256"},
		PublicKeys: []crypto.PublicKey{key.Public()},
		Issuer:     "https://idp.example",
		Audience:   "mqtt.example",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tokens.Close()
	for _, aud := range []string{"mqtt.example", "shop.example"} {
		tok, err := (&auth.JWTMinter{Method: jwt.SigningMethodES256, Key: key, Subject: "sensor-1",
			Issuer: "https://idp.example", Audience: aud}).Token(context.Background())
		if err != nil {
			log.Fatal(err)
		}
		_, err = tokens.Authenticate(context.Background(), &mqttsec.Client{ID: "sensor-1"},
			mqttsec.Credentials{Password: []byte(tok)})
		fmt.Println(aud, mqttsec.CodeOf(err))
	}
	// Output:
	// true
	// mqtt.example 0x00 success
	// shop.example 0x86 bad user name or password
}

// Client certificates checked again after every reload of the CA bundle
// and revocation lists: the Guard is the Reloader's event sink, and the
// X509 authenticator verifies with the Reloader. The Guard comes first,
// its parts after.
func ExampleX509Config_verifier() {
	dir, err := os.MkdirTemp("", "pki")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := tlsconf.CreateDevCA(dir)
	if err != nil {
		log.Fatal(err)
	}
	crl, err := ca.WriteCRL()
	if err != nil {
		log.Fatal(err)
	}

	guard := mqttsec.New(mqttsec.Config{})
	tc := ca.ServerConfig()
	tc.ClientAuth = tlsconf.ClientAuthRequire
	tc.CRLFiles = []string{crl}
	tc.Events = guard
	reloader, err := tlsconf.NewReloader(tc)
	if err != nil {
		log.Fatal(err)
	}
	defer reloader.Close()
	certs, err := auth.NewX509(auth.X509Config{Verifier: reloader})
	if err != nil {
		log.Fatal(err)
	}
	guard.Reload(mqttsec.Config{Authenticator: certs /* , Authorizer: ... */})
	serverTLS, err := reloader.Server()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(serverTLS.ClientAuth)
	// Give serverTLS to the broker's listener; revoke a device with a new
	// CRL file, and its connection is closed with 0x87.
	// Output: RequireAndVerifyClientCert
}
