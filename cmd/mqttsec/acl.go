package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/casbin/casbin/v2"
	"github.com/casbin/casbin/v2/model"
	fileadapter "github.com/casbin/casbin/v2/persist/file-adapter"
	"github.com/spf13/cobra"

	"github.com/mqttsec/mqttsec/acl"
)

func init() {
	rootCmd.AddCommand(newACLCmd())
}

func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Check and lint topic authorization policies (Casbin CSV or Mosquitto acl_file)",
	}
	cmd.AddCommand(newACLCheckCmd(), newACLLintCmd())
	return cmd
}

// errDenied is returned (with exit code 1) when acl check denies.
var errDenied = errors.New("denied")

func newACLCheckCmd() *cobra.Command {
	var policy, mosq, modelFile string
	var roles []string
	var modelDefault bool
	cmd := &cobra.Command{
		Use:   "check (--policy FILE | --mosquitto FILE) [--role ROLE]... USER CLIENT read|write TOPIC",
		Short: "Decide one request and print the rule that decided it",
		Long: `Decide whether USER (an MQTT username, or the subject of a token or
certificate; "" for anonymous) connected as CLIENT may read (subscribe to a
filter, or receive a topic) or write (publish) TOPIC, exactly as the broker's
acl.Casbin authorizer would, and print the decision and the policy line that
decided it: the first matching deny rule, else the first matching allow rule.

The policy is a Casbin CSV file for the built-in model acl.Model (--policy) or
a Mosquitto acl_file (--mosquitto). --role gives USER a role its credential
carries (a JWT roles claim), as a g line would. A USER that is "*" or a role
name is denied everything.

Exit status: 0 allow, 1 deny, 2 usage or policy error.`,
		Args: cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, client, act, topic := args[0], args[1], args[2], args[3]
			if act != acl.ActRead && act != acl.ActWrite {
				return &exitError{2, fmt.Errorf("act %q: want read or write", act)}
			}
			if (policy == "") == (mosq == "") {
				return &exitError{2, errors.New("give exactly one of --policy or --mosquitto")}
			}
			m := acl.NewModel()
			if modelFile != "" {
				var err error
				if m, err = model.NewModelFromFile(modelFile); err != nil {
					return &exitError{2, err}
				}
			}
			var e *casbin.Enforcer
			var err error
			if policy != "" {
				if _, err := os.Stat(policy); err != nil {
					return &exitError{2, err}
				}
				e, err = casbin.NewEnforcer(m, fileadapter.NewAdapter(policy))
			} else {
				e, err = casbin.NewEnforcer(m, acl.MosquittoAdapter{Path: mosq})
			}
			if err != nil {
				return &exitError{2, err}
			}
			e.EnableLog(false)
			c, err := acl.NewCasbin(e)
			if err != nil {
				return &exitError{2, err}
			}
			d := c.ExplainRoles(user, client, roles, act, topic)
			out := cmd.OutOrStdout()
			word := "deny"
			if d.Allowed {
				word = "allow"
			}
			fmt.Fprintln(out, word)
			if d.Rule != nil {
				fmt.Fprintf(out, "rule:   %s\n", acl.Rule{Sub: d.Rule[0], Topic: d.Rule[1], Act: d.Rule[2], Eft: d.Rule[3]})
			}
			fmt.Fprintf(out, "reason: %s\n", d.Reason)
			if !d.Allowed {
				return &exitError{1, errDenied}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policy, "policy", "", "Casbin CSV policy file (p and g lines)")
	f.StringVar(&mosq, "mosquitto", "", "Mosquitto acl_file instead of a Casbin policy")
	f.StringArrayVar(&roles, "role", nil, "a role USER's credential carries (repeatable)")
	f.StringVar(&modelFile, "model", "", "Casbin model file; it must be the built-in model (acl.Model), which is the default")
	// The built-in model always was the default; the flag is kept so that
	// scripts using it keep working.
	f.BoolVar(&modelDefault, "model-default", true, "use the built-in model (the default)")
	_ = f.MarkDeprecated("model-default", "the built-in model is the default")
	return cmd
}

func newACLLintCmd() *cobra.Command {
	var mosq, csvForm bool
	o := &lintOptions{}
	cmd := &cobra.Command{
		Use:   "lint [--mosquitto|--casbin] [--clientid-bound] FILE",
		Short: `Lint a policy file (an alias for "mqttsec lint --type mosquitto-acl|casbin")`,
		Long: `Report dangerous and useless rules of one policy file, as "mqttsec lint" does:
broad wildcard grants (to a user, a role or anonymous clients), %c rules while
clients choose their client IDs, Mosquitto patterns without %u or %c,
templates a value can complete to $share, rules a deny rule overrides or
another rule covers, and rules that never match.

--clientid-bound says the broker binds client IDs to identities, which makes
%c rules safe: their findings are left out.

The file is a Casbin CSV policy or a Mosquitto acl_file; the format is guessed
from the first rule line unless --mosquitto or --casbin is given.

Exit status: 0 no findings, 1 findings, 2 the file does not parse.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return &exitError{2, err}
			}
			if o.fileFormat, err = aclLintFormat(mosq, csvForm, data); err != nil {
				return &exitError{2, err}
			}
			return runLint(cmd.OutOrStdout(), args, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&mosq, "mosquitto", false, "the file is a Mosquitto acl_file")
	f.BoolVar(&csvForm, "casbin", false, "the file is a Casbin CSV policy")
	f.BoolVar(&o.clientIDBound, "clientid-bound", false, "client IDs are bound to identities: %c rules are safe")
	f.StringVar(&o.format, "format", "text", "output format: text, json or sarif")
	f.StringVar(&o.failOn, "fail-on", "low", "exit 1 on a finding of this severity or higher: info, low, medium, high or none")
	return cmd
}

// looksMosquitto reports whether the first rule line of data starts with a
// Mosquitto keyword.
func looksMosquitto(data []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		w, _, _ := strings.Cut(l, " ")
		return w == "topic" || w == "pattern" || w == "user"
	}
	return false
}
