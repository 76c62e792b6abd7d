package clientid_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/clientid"
)

// A Guard with a client-ID policy, a binding and the owner takeover
// registry: alice may use IDs starting with "alice-", a device the common
// name of its certificate, and nobody else's.
func Example() {
	policy, err := clientid.NewPolicy(clientid.WithLength(1, 64))
	if err != nil {
		log.Fatal(err)
	}
	binding, err := clientid.NewBinding("{username}-*", "{cn}")
	if err != nil {
		log.Fatal(err)
	}
	guard := mqttsec.New(mqttsec.Config{
		Authenticator: mqttsec.AuthenticatorFunc(func(_ context.Context, cl *mqttsec.Client, cred mqttsec.Credentials) (*mqttsec.Identity, error) {
			if string(cred.Password) != "secret-"+cl.Username { // an auth.Passwords in real life
				return nil, mqttsec.ErrBadCredentials
			}
			return &mqttsec.Identity{Subject: cl.Username, Method: mqttsec.MethodPassword}, nil
		}),
		ClientIDs: policy,
		Registry:  clientid.Bound(clientid.NewRegistry(), binding),
		Events:    mqttsec.EventSinkFunc(func(mqttsec.Event) {}),
	})
	connect := func(id, user string) {
		_, err := guard.Connect(context.Background(),
			mqttsec.Client{ID: id, Username: user, Protocol: 5, CleanStart: true},
			mqttsec.Credentials{Password: []byte("secret-" + user)}, nil)
		fmt.Printf("%-12s as %-6s %s\n", id, user, mqttsec.CodeOf(err))
	}
	connect("alice-phone", "alice")
	connect("bob-phone", "alice") // outside alice's binding
	connect("alice-phone", "bob") // outside bob's binding
	connect("$SYS", "alice")      // refused by the policy
	// Output:
	// alice-phone  as alice  0x00 success
	// bob-phone    as alice  0x85 client identifier not valid
	// alice-phone  as bob    0x85 client identifier not valid
	// $SYS         as alice  0x85 client identifier not valid
}

func ExampleNewRegistry() {
	reg := clientid.NewRegistry(clientid.WithTakeover(clientid.TakeoverOwner))
	ctx := context.Background()
	alice := &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}
	bob := &mqttsec.Identity{Subject: "bob", Method: mqttsec.MethodPassword}

	lease, err := reg.Claim(ctx, &mqttsec.Client{ID: "sensor-1", Identity: alice})
	if err != nil {
		log.Fatal(err)
	}
	_, err = reg.Claim(ctx, &mqttsec.Client{ID: "sensor-1", Identity: bob})
	fmt.Println("bob while alice is connected:", errors.Is(err, clientid.ErrTaken))

	lease.Release(0) // alice's connection ended, no session kept
	lease, err = reg.Claim(ctx, &mqttsec.Client{ID: "sensor-1", Identity: bob})
	fmt.Println("bob afterwards:", err == nil, "resume:", lease.Resume)
	// Output:
	// bob while alice is connected: true
	// bob afterwards: true resume: false
}

func ExampleParseTemplate() {
	t, err := clientid.ParseTemplate("{username}-*")
	if err != nil {
		log.Fatal(err)
	}
	aliceX := &mqttsec.Client{Identity: &mqttsec.Identity{Subject: "alice-x", Method: mqttsec.MethodPassword}}
	alice := &mqttsec.Client{Identity: &mqttsec.Identity{Subject: "alice", Method: mqttsec.MethodPassword}}
	fmt.Println(t.Match("alice-x-1", aliceX), t.Match("alice-x-1", alice))
	// Output: true false
}

func ExampleGenerate() {
	id := clientid.Generate("meter-")
	var policy clientid.Policy
	fmt.Println(strings.HasPrefix(id, "meter-"), len(id), policy.Validate(id) == nil)
	// Output: true 32 true
}

func ExamplePolicy() {
	policy, err := clientid.NewPolicy(clientid.WithPattern(`[a-z]+-[0-9]{1,6}`))
	if err != nil {
		log.Fatal(err)
	}
	for _, id := range []string{"pump-17", "pump/17", "Pump-17"} {
		fmt.Println(id, policy.Validate(id) == nil)
	}
	// Output:
	// pump-17 true
	// pump/17 false
	// Pump-17 false
}
