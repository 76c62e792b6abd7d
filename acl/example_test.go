package acl_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/casbin/casbin/v2"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/acl"
)

func ExampleNewCasbin() {
	e, _ := casbin.NewEnforcer(acl.NewModel())
	c, err := acl.NewCasbin(e)
	if err != nil {
		panic(err)
	}
	_, _ = e.AddPolicies([][]string{
		{"operators", "plant/#", "read", "allow"},
		{"operators", "plant/+/alarm", "readwrite", "deny"},
		{"*", "devices/%c/#", "write", "allow"},
	})
	_, _ = e.AddGroupingPolicy("alice", "operators")

	alice := &mqttsec.Client{ID: "console-1", Username: "alice"}
	authz := c.Bind(alice) // what a Guard does at CONNECT
	ctx := context.Background()
	for _, r := range []struct {
		a     mqttsec.Access
		topic string
	}{
		{mqttsec.Subscribe, "plant/#"},
		{mqttsec.Subscribe, "#"},
		{mqttsec.Receive, "plant/7/temp"},
		{mqttsec.Receive, "plant/7/alarm"},
		{mqttsec.Publish, "devices/console-1/status"},
	} {
		err := authz.Authorize(ctx, alice, r.a, r.topic)
		fmt.Printf("%-9s %-24s %v\n", r.a, r.topic, err == nil)
	}
	// Output:
	// subscribe plant/#                  true
	// subscribe #                        false
	// receive   plant/7/temp             true
	// receive   plant/7/alarm            false
	// publish   devices/console-1/status true
}

func ExampleParseMosquitto() {
	rules, err := acl.ParseMosquitto(strings.NewReader(`topic read public/#
user alice
topic readwrite alice/#
pattern write devices/%c/#
`))
	if err != nil {
		panic(err)
	}
	for _, r := range rules {
		fmt.Println(r)
	}
	// Output:
	// p, "", public/#, read, allow
	// p, alice, alice/#, readwrite, allow
	// p, *, devices/%c/#, write, allow
}

func ExampleCasbin_Explain() {
	e, _ := casbin.NewEnforcer(acl.NewModel())
	c, _ := acl.NewCasbin(e)
	_, _ = e.AddPolicies([][]string{{"alice", "a/#", "read", "allow"}, {"*", "a/secret/#", "read", "deny"}})
	d := c.Explain("alice", "c1", "read", "a/secret/x")
	fmt.Println(d.Allowed, d.Rule, d.Reason)
	// Output: false [* a/secret/# read deny] denied by a deny rule
}
