package clientid

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mqttsec/mqttsec"
)

// Limits of a template.
const (
	// MaxTemplateLen is the longest template [ParseTemplate] accepts, in
	// bytes.
	MaxTemplateLen = 256
	// maxWildcards is the largest number of '*' in one template.
	maxWildcards = 4
	// MaxValues is how many values of one placeholder a template tries: the
	// first MaxValues SANs of a type in a certificate. More are ignored, so
	// a crafted certificate cannot make a CONNECT expensive.
	MaxValues = 16
)

// field is the source of a template's placeholder.
type field uint8

const (
	fieldUsername field = iota + 1
	fieldSub
	fieldCN
	fieldSANDNS
	fieldSANEmail
	fieldSANURI
	fieldSANIP
	fieldAttr
)

var fieldNames = map[string]field{
	"username":  fieldUsername,
	"sub":       fieldSub,
	"cn":        fieldCN,
	"san:dns":   fieldSANDNS,
	"san:email": fieldSANEmail,
	"san:uri":   fieldSANURI,
	"san:ip":    fieldSANIP,
}

const attrPrefix = "attr:"

// maxAttrKey bounds the key of an {attr:KEY} placeholder.
const maxAttrKey = 64

type itemKind uint8

const (
	kindLiteral itemKind = iota + 1
	kindPlaceholder
	kindWildcard
)

type item struct {
	kind  itemKind
	lit   string // literal text; for a placeholder, its name
	field field
	attr  string // key of {attr:KEY}
	// stop holds the runes a wildcard never matches: the last rune of the
	// literal before it and the first rune of the literal after it (-1
	// when there is none).
	stop [2]rune
}

// Template is a parsed binding template: the client IDs one identity may
// use. A template is a sequence of
//
//   - literal text, matched exactly;
//   - exactly one placeholder, matched exactly by one of the values the
//     identity has for it (see below); a placeholder without a value never
//     matches, so "{username}-*" admits nothing for an anonymous client;
//   - '*' wildcards (at most 4), each matching one or more characters, none
//     of which is the literal character just before or just after it.
//
// The placeholders:
//
//	{username}, {sub}  Identity.Subject: the authenticated principal (user name, token subject, certificate name); not for an anonymous identity
//	{cn}               the subject common name of the client certificate the TLS layer verified
//	{san:dns}          a DNS name of that certificate
//	{san:email}        an e-mail address of that certificate
//	{san:uri}          a URI of that certificate
//	{san:ip}           an IP address of that certificate, as net.IP.String writes it
//	{attr:KEY}         Identity.Attributes[KEY], a fact the authenticator vouches for
//
// A certificate field comes only from a chain the TLS layer verified
// (tls.ConnectionState.VerifiedChains), never from an unverified
// certificate. Of a multi-valued field, the first [MaxValues] are tried.
//
// A wildcard must be separated from the placeholder and from other
// wildcards by literal text: "{username}*" and "{cn}**" do not parse. With
// the rule that a wildcard never matches its neighbouring literal
// characters, a client ID matches a template for one value at most: with
// "{username}-*", "alice-x-1" is alice-x's (the wildcard "1" cannot contain
// '-'), never alice's. Two templates of one [Binding] can still overlap:
// give each a literal prefix of its own when their placeholders come from
// names that different principals could share ("u-{username}-*",
// "d-{cn}").
//
// '{', '}' and '*' cannot be written literally, nor any character no
// [Policy] accepts ('/', '+', '#', control and format characters), and a
// template cannot start with '$'. A Template is immutable and safe for
// concurrent use.
type Template struct {
	src   string
	items []item
	ph    int // index of the placeholder in items
}

// ParseTemplate parses a binding template (see [Template]). Its errors
// wrap [ErrTemplate].
func ParseTemplate(s string) (*Template, error) {
	if s == "" || len(s) > MaxTemplateLen {
		return nil, fmt.Errorf("%w: length %d not in 1..%d", ErrTemplate, len(s), MaxTemplateLen)
	}
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: %q is not valid UTF-8", ErrTemplate, s)
	}
	t := &Template{src: s, ph: -1}
	wild := 0
	for i := 0; i < len(s); {
		switch s[i] {
		case '{':
			j := strings.IndexAny(s[i+1:], "{}")
			if j < 0 || s[i+1+j] != '}' {
				return nil, fmt.Errorf("%w: %q: '{' at byte %d is not closed", ErrTemplate, s, i)
			}
			name := s[i+1 : i+1+j]
			it, err := placeholder(name)
			if err != nil {
				return nil, fmt.Errorf("%w: %q: %w", ErrTemplate, s, err)
			}
			if t.ph >= 0 {
				return nil, fmt.Errorf("%w: %q: more than one placeholder", ErrTemplate, s)
			}
			t.ph = len(t.items)
			t.items = append(t.items, it)
			i += j + 2
		case '}':
			return nil, fmt.Errorf("%w: %q: '}' at byte %d is not opened", ErrTemplate, s, i)
		case '*':
			if wild++; wild > maxWildcards {
				return nil, fmt.Errorf("%w: %q: more than %d wildcards", ErrTemplate, s, maxWildcards)
			}
			t.items = append(t.items, item{kind: kindWildcard, stop: [2]rune{-1, -1}})
			i++
		default:
			j := strings.IndexAny(s[i:], "{}*")
			if j < 0 {
				j = len(s) - i
			}
			lit := s[i : i+j]
			for _, r := range lit {
				if r < utf8.RuneSelf && (r == '+' || r == '#' || r == '/' || r < 0x20 || r == 0x7f) || forbidden(r) {
					return nil, fmt.Errorf("%w: %q: %q cannot be in a client ID", ErrTemplate, s, r)
				}
			}
			t.items = append(t.items, item{kind: kindLiteral, lit: lit})
			i += j
		}
	}
	if t.ph < 0 {
		return nil, fmt.Errorf("%w: %q has no placeholder: it would bind no identity", ErrTemplate, s)
	}
	if t.items[0].kind == kindLiteral && t.items[0].lit[0] == '$' {
		return nil, fmt.Errorf("%w: %q starts with '$'", ErrTemplate, s)
	}
	for k := 1; k < len(t.items); k++ {
		if t.items[k].kind != kindLiteral && t.items[k-1].kind != kindLiteral {
			return nil, fmt.Errorf("%w: %q: a wildcard must be separated from the placeholder and other wildcards by literal text", ErrTemplate, s)
		}
	}
	for k := range t.items {
		it := &t.items[k]
		if it.kind != kindWildcard {
			continue
		}
		if k > 0 {
			r, _ := utf8.DecodeLastRuneInString(t.items[k-1].lit)
			it.stop[0] = r
		}
		if k+1 < len(t.items) {
			r, _ := utf8.DecodeRuneInString(t.items[k+1].lit)
			it.stop[1] = r
		}
	}
	return t, nil
}

func placeholder(name string) (item, error) {
	if f, ok := fieldNames[name]; ok {
		return item{kind: kindPlaceholder, lit: name, field: f}, nil
	}
	key, ok := strings.CutPrefix(name, attrPrefix)
	if !ok {
		return item{}, fmt.Errorf("unknown placeholder {%s}", name)
	}
	if key == "" || len(key) > maxAttrKey {
		return item{}, fmt.Errorf("attribute name length %d not in 1..%d", len(key), maxAttrKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return item{}, fmt.Errorf("attribute name %q: only letters, digits, '_', '-' and '.'", key)
		}
	}
	return item{kind: kindPlaceholder, lit: name, field: fieldAttr, attr: key}, nil
}

// String returns the template as written.
func (t *Template) String() string { return t.src }

// Match reports whether the client ID id lies in the template for the
// identity and the verified client certificate of cl.
func (t *Template) Match(id string, cl *mqttsec.Client) bool {
	var buf [MaxValues]string
	return t.match(id, values(t.items[t.ph], cl, buf[:0]))
}

func (t *Template) match(id string, vals []string) bool {
	return t.matchFrom(id, 0, vals)
}

// matchFrom matches id against items[i:]. Only the placeholder branches
// (over its values); a wildcard ends at the first rune it may not match,
// which the literal after it starts with.
func (t *Template) matchFrom(id string, i int, vals []string) bool {
	for ; i < len(t.items); i++ {
		it := &t.items[i]
		switch it.kind {
		case kindLiteral:
			if !strings.HasPrefix(id, it.lit) {
				return false
			}
			id = id[len(it.lit):]
		case kindWildcard:
			n := 0
			for n < len(id) {
				r, size := utf8.DecodeRuneInString(id[n:])
				if r == it.stop[0] || r == it.stop[1] {
					break
				}
				n += size
			}
			if n == 0 {
				return false
			}
			id = id[n:]
		case kindPlaceholder:
			for _, v := range vals {
				if v != "" && strings.HasPrefix(id, v) && t.matchFrom(id[len(v):], i+1, nil) {
					return true
				}
			}
			return false
		}
	}
	return id == ""
}

// values appends the values cl has for the placeholder it, at most
// MaxValues of them.
func values(it item, cl *mqttsec.Client, out []string) []string {
	if cl == nil {
		return out
	}
	id := cl.Identity
	switch it.field {
	case fieldUsername, fieldSub:
		if id != nil && id.Method != mqttsec.MethodAnonymous && id.Subject != "" {
			out = append(out, id.Subject)
		}
	case fieldAttr:
		if id != nil {
			if v := id.Attributes[it.attr]; v != "" {
				out = append(out, v)
			}
		}
	default:
		leaf := verifiedLeaf(cl)
		if leaf == nil {
			return out
		}
		switch it.field {
		case fieldCN:
			out = append(out, leaf.Subject.CommonName)
		case fieldSANDNS:
			out = append(out, leaf.DNSNames[:min(len(leaf.DNSNames), MaxValues)]...)
		case fieldSANEmail:
			out = append(out, leaf.EmailAddresses[:min(len(leaf.EmailAddresses), MaxValues)]...)
		case fieldSANURI:
			for _, u := range leaf.URIs[:min(len(leaf.URIs), MaxValues)] {
				out = append(out, u.String())
			}
		case fieldSANIP:
			for _, ip := range leaf.IPAddresses[:min(len(leaf.IPAddresses), MaxValues)] {
				out = append(out, ip.String())
			}
		}
	}
	return out
}

// verifiedLeaf returns the client certificate of a chain the TLS layer
// verified, or nil.
func verifiedLeaf(cl *mqttsec.Client) *x509.Certificate {
	if cl.TLS == nil || len(cl.TLS.VerifiedChains) == 0 || len(cl.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return cl.TLS.VerifiedChains[0][0]
}

// Binding binds client IDs to identities: an authenticated client may use
// a client ID only when it matches one of the binding's templates (see
// [Template]) for its identity. A typical binding lets users name their
// connections after themselves and devices use the name in their
// certificate:
//
//	b, err := clientid.NewBinding("{username}-*", "{cn}")
//
// The Guard validates client IDs ([mqttsec.ClientIDPolicy]) before
// authentication, when no identity is known yet; a binding is checked
// after it, in the registry: [Bound] wraps a [mqttsec.Registry] with it.
// An ID outside the binding is refused with [ErrNotBound] (0x85 "client
// identifier not valid"; 0x02 for an MQTT 3.1.1 client), before the
// registry is asked, so it never takes an ID over.
//
// An ID the broker assigned to a client that sent none
// ([mqttsec.Client.Assigned]) is not the client's choice: the binding does
// not apply to it (the Policy and the registry still do). Use a random
// generator for assigned IDs ([Generate]), so that nobody can claim an ID
// the broker will assign to someone else.
//
// A Binding is immutable and safe for concurrent use.
type Binding struct {
	templates []*Template
}

// NewBinding parses templates (see [Template]); a client ID must match one
// of them. It needs at least one. Its errors wrap [ErrTemplate].
func NewBinding(templates ...string) (*Binding, error) {
	if len(templates) == 0 {
		return nil, fmt.Errorf("%w: a binding needs at least one template", ErrTemplate)
	}
	b := &Binding{templates: make([]*Template, 0, len(templates))}
	for _, s := range templates {
		t, err := ParseTemplate(s)
		if err != nil {
			return nil, err
		}
		b.templates = append(b.templates, t)
	}
	return b, nil
}

// Templates returns the templates as written.
func (b *Binding) Templates() []string {
	if b == nil {
		return nil
	}
	out := make([]string, len(b.templates))
	for i, t := range b.templates {
		out[i] = t.src
	}
	return out
}

// Check returns nil when cl.ID matches one of the templates for
// cl.Identity and cl's verified client certificate, or an error wrapping
// [ErrNotBound]. A nil Binding, client or identity is refused.
func (b *Binding) Check(cl *mqttsec.Client) error {
	if b == nil || cl == nil || cl.Identity == nil {
		return fmt.Errorf("%w: no binding or no identity", ErrNotBound)
	}
	if cl.Assigned {
		return nil
	}
	for _, t := range b.templates {
		if t.Match(cl.ID, cl) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s matches no template for %q", ErrNotBound, quote(cl.ID), cl.Identity.Subject)
}

// Bound returns a [mqttsec.Registry] that refuses a client ID outside b
// (with [ErrNotBound]) and passes the others to next. A nil next means
// NewRegistry(); a nil b refuses every ID.
//
//	guard := mqttsec.New(mqttsec.Config{
//		ClientIDs: policy,
//		Registry:  clientid.Bound(clientid.NewRegistry(), binding),
//		...
//	})
func Bound(next mqttsec.Registry, b *Binding) mqttsec.Registry {
	if next == nil {
		next = NewRegistry()
	}
	return mqttsec.RegistryFunc(func(ctx context.Context, cl *mqttsec.Client) (mqttsec.Lease, error) {
		if err := b.Check(cl); err != nil {
			return mqttsec.Lease{}, err
		}
		return next.Claim(ctx, cl)
	})
}
