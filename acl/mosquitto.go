package acl

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
	"github.com/mqttsec/mqttsec/topic"
)

// Anonymous is the subject of rules for clients without a username: the
// topic lines before the first "user" line of a Mosquitto acl_file. It is
// the empty string because Authorize takes the subject from
// [mqttsec.Client.Username].
const Anonymous = ""

// Rule is one policy line of [Model]: "p, Sub, Topic, Act, Eft".
type Rule struct {
	Sub   string
	Topic string
	Act   string
	Eft   string
	// Line is the line of the source file the rule came from (1-based),
	// or 0.
	Line int
	// Pattern is true for a Mosquitto "pattern" line.
	Pattern bool
}

// Policy returns the rule as Casbin policy values (sub, topic, act, eft).
func (r Rule) Policy() []string { return []string{r.Sub, r.Topic, r.Act, r.Eft} }

// String returns the rule as a line of a Casbin CSV policy file.
func (r Rule) String() string { return csvLine(append([]string{"p"}, r.Policy()...)) }

func csvLine(fields []string) string {
	out := make([]string, len(fields))
	for i, f := range fields {
		if f == "" || strings.ContainsAny(f, ",\"\r\n") || strings.TrimSpace(f) != f {
			f = `"` + strings.ReplaceAll(f, `"`, `""`) + `"`
		}
		out[i] = f
	}
	return strings.Join(out, ", ")
}

// ParseMosquitto reads a Mosquitto acl_file and returns its rules in the
// model of this package:
//
//   - "topic [read|write|readwrite|deny] TOPIC" before any "user" line applies
//     to anonymous clients only: subject [Anonymous];
//   - after "user NAME", topic lines have subject NAME;
//   - "pattern [read|write|readwrite|deny] TOPIC" applies to every client
//     wherever it appears: subject [Everyone], with %u and %c kept;
//   - a missing access means readwrite; "deny" becomes a readwrite deny rule;
//   - "user *" is refused: the model's "*" subject is every user;
//   - a topic line with %u or %c, or any line with ${username} or
//     ${clientid}, is refused: Mosquitto keeps them literally, the model
//     would expand them.
//
// Lines are parsed as Mosquitto 2.0 does (space-separated tokens, '#' in the
// first column starts a comment, the topic is the rest of the line). Errors
// wrap [ErrSyntax] and name the line.
//
// The model differs from Mosquitto's own checks in documented ways: a deny
// rule always wins (Mosquitto lets an allow in the user's section win over a
// pattern deny); a SUBSCRIBE is authorized by filter containment (Mosquitto
// allows every SUBSCRIBE and filters deliveries); a username or client ID
// with '+', '#' or '/' makes the patterns that use it not apply (Mosquitto
// denies all pattern-based access for '+' and '#' and substitutes '/'); a
// value starting with '$' at the start of a pattern makes it not apply
// (Mosquitto lets client "$SYS" read $SYS/# through "pattern read %c/#").
func ParseMosquitto(r io.Reader) ([]Rule, error) {
	br := bufio.NewReader(r)
	var rules []Rule
	user, inUser := "", false
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return nil, err
		}
		if line == "" && err == io.EOF {
			break
		}
		line = strings.TrimRight(line, " \t\n\v\f\r")
		if strings.HasPrefix(line, "#") {
			if err == io.EOF {
				break
			}
			continue
		}
		tok, rest := nextToken(line)
		switch tok {
		case "":
		case "topic", "pattern":
			access, rest2 := nextToken(rest)
			if access == "" {
				return nil, fmt.Errorf("%w: line %d: %s without a topic", ErrSyntax, n, tok)
			}
			t := strings.Trim(rest2, " \t\n\v\f\r")
			if rest2 == "" {
				t, access = access, "readwrite"
			}
			act, eft := "", EftAllow
			switch access {
			case "read":
				act = ActRead
			case "write":
				act = ActWrite
			case "readwrite":
				act = ActReadWrite
			case "deny":
				act, eft = ActReadWrite, EftDeny
			default:
				return nil, fmt.Errorf("%w: line %d: invalid access %q (want read, write, readwrite or deny)", ErrSyntax, n, access)
			}
			if err := topic.ValidateFilter(t); err != nil {
				return nil, fmt.Errorf("%w: line %d: invalid topic %q: %w", ErrSyntax, n, t, err)
			}
			// Mosquitto substitutes %u and %c in pattern lines only and
			// never ${...}; the model substitutes them in every rule, where
			// they would give a client rights it picks with its client ID.
			if strings.Contains(t, "${username}") || strings.Contains(t, "${clientid}") {
				return nil, fmt.Errorf("%w: line %d: topic %q: Mosquitto does not expand ${username} or ${clientid}; use %%u or %%c in a pattern line", ErrSyntax, n, t)
			}
			if tok == "topic" && topic.HasPlaceholder(t) {
				return nil, fmt.Errorf("%w: line %d: topic %q: Mosquitto expands %%u and %%c in pattern lines only; use a pattern line", ErrSyntax, n, t)
			}
			rule := Rule{Topic: t, Act: act, Eft: eft, Line: n, Pattern: tok == "pattern"}
			switch {
			case rule.Pattern:
				rule.Sub = Everyone
			case inUser:
				rule.Sub = user
			default:
				rule.Sub = Anonymous
			}
			rules = append(rules, rule)
		case "user":
			name := strings.Trim(rest, " \t\n\v\f\r")
			if name == "" {
				return nil, fmt.Errorf("%w: line %d: user without a name", ErrSyntax, n)
			}
			if name == Everyone {
				// In the model "*" is every user, not the user named "*".
				return nil, fmt.Errorf("%w: line %d: user %q cannot be imported (it would apply to every user)", ErrSyntax, n, name)
			}
			user, inUser = name, true
		default:
			return nil, fmt.Errorf("%w: line %d: unknown keyword %q", ErrSyntax, n, tok)
		}
		if err == io.EOF {
			break
		}
	}
	return rules, nil
}

// nextToken returns the next space-delimited token of s and what follows
// the single space after it, as strtok does.
func nextToken(s string) (tok, rest string) {
	s = strings.TrimLeft(s, " ")
	if s == "" {
		return "", ""
	}
	tok, rest, _ = strings.Cut(s, " ")
	return tok, rest
}

// MosquittoAdapter is a read-only Casbin adapter that loads a Mosquitto
// acl_file (see [ParseMosquitto]) into [Model]:
//
//	e, err := casbin.NewEnforcer(acl.NewModel(), acl.MosquittoAdapter{Path: "acl_file"})
//
// Saving and auto-save are not implemented. It is safe for concurrent use.
type MosquittoAdapter struct {
	Path string
}

// LoadPolicy implements persist.Adapter.
func (a MosquittoAdapter) LoadPolicy(m model.Model) error {
	f, err := os.Open(a.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	rules, err := ParseMosquitto(f)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Path, err)
	}
	for _, r := range rules {
		if err := persist.LoadPolicyArray(append([]string{"p"}, r.Policy()...), m); err != nil {
			return err
		}
	}
	return nil
}

// SavePolicy implements persist.Adapter; it is not supported.
func (MosquittoAdapter) SavePolicy(model.Model) error {
	return errors.New("acl: a Mosquitto acl_file is read-only")
}

// AddPolicy implements persist.Adapter; it is not supported.
func (MosquittoAdapter) AddPolicy(string, string, []string) error { return errNotImplemented }

// RemovePolicy implements persist.Adapter; it is not supported.
func (MosquittoAdapter) RemovePolicy(string, string, []string) error { return errNotImplemented }

// RemoveFilteredPolicy implements persist.Adapter; it is not supported.
func (MosquittoAdapter) RemoveFilteredPolicy(string, string, int, ...string) error {
	return errNotImplemented
}

// ParsePolicy reads a Casbin CSV policy file for [Model] (as Casbin's file
// adapter does) and returns its p rules, with line numbers, and its g
// lines. A g line must name exactly a user and a role, without commas (the
// index denies everything otherwise). Errors wrap [ErrSyntax] and name the
// line.
func ParsePolicy(r io.Reader) (rules []Rule, groups [][2]string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cr := csv.NewReader(strings.NewReader(line))
		cr.Comma = ','
		cr.Comment = '#'
		cr.TrimLeadingSpace = true
		fields, err := cr.Read()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: line %d: %w", ErrSyntax, n, err)
		}
		switch {
		case fields[0] == "p" && len(fields) == 5:
			rules = append(rules, Rule{Sub: fields[1], Topic: fields[2], Act: fields[3], Eft: fields[4], Line: n})
		case fields[0] == "g" && len(fields) == 3:
			if strings.Contains(fields[1]+fields[2], ",") {
				// Casbin keys lines by their fields joined with commas;
				// see the package documentation.
				return nil, nil, fmt.Errorf("%w: line %d: a name in a g line contains a comma: every check would be denied", ErrSyntax, n)
			}
			groups = append(groups, [2]string{fields[1], fields[2]})
		case fields[0] == "g":
			return nil, nil, fmt.Errorf("%w: line %d: a g line names a user and a role (\"g, user, role\"); with more names every check would be denied", ErrSyntax, n)
		default:
			return nil, nil, fmt.Errorf("%w: line %d: want \"p, sub, topic, act, eft\" or \"g, user, role\"", ErrSyntax, n)
		}
	}
	return rules, groups, sc.Err()
}
