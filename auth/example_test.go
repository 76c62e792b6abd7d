package auth_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
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
