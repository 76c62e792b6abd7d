package lint_test

import (
	"fmt"

	"github.com/mqttsec/mqttsec/lint"
)

// ExampleFiles lints a Mosquitto acl_file and prints each finding with
// its file and line.
func ExampleFiles() {
	rep, err := lint.Files([]string{"testdata/standalone/acl_file"}, lint.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range rep.Findings {
		fmt.Printf("%s:%d: %s %s: %s\n", f.File, f.Line, f.Severity, f.ID, f.Evidence)
	}
	// Output:
	// testdata/standalone/acl_file:1: high anonymous-wildcard-acl: anonymous clients may read every topic tree: p, "", #, read, allow
	// testdata/standalone/acl_file:4: medium clientid-pattern-unbound: a rule with %c gives these rights to any client that picks a matching client ID: bind client IDs to identities: p, *, %c/in, read, allow
}
