package integrity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// KeySource finds keys by key ID: the verification keys of signers and the
// content-encryption keys of topics. Key returns the key, or an error
// wrapping [ErrUnknownKey] when it has none with that ID; any other error
// (a key server that cannot be reached) is also a refusal for the message
// being checked. Implementations must be safe for concurrent use and
// should not block for long: a broker calls Key once per protected
// message.
type KeySource interface {
	Key(ctx context.Context, id string) (*Key, error)
}

// KeySourceFunc adapts a function to a KeySource.
type KeySourceFunc func(ctx context.Context, id string) (*Key, error)

// Key calls f(ctx, id).
func (f KeySourceFunc) Key(ctx context.Context, id string) (*Key, error) { return f(ctx, id) }

// Sources returns a KeySource that asks each source in order and returns
// the first key found. A source's error other than [ErrUnknownKey] stops
// the search and is returned, so that a source that cannot answer never
// lets a later one supply a different key for the same ID.
func Sources(srcs ...KeySource) KeySource {
	srcs = slices.Clone(srcs)
	return KeySourceFunc(func(ctx context.Context, id string) (*Key, error) {
		for _, s := range srcs {
			k, err := s.Key(ctx, id)
			if err == nil {
				return k, nil
			}
			if !errors.Is(err, ErrUnknownKey) {
				return nil, err
			}
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	})
}

// Keyring is a static set of keys, typically loaded from a JWK Set file
// ({"keys": [...]}, see [ParseKeyring]). Keys are rotated by key ID: add
// the new key, let senders switch to it, then remove the old one, each
// step with [Keyring.Replace] or [Keyring.LoadFile], which swap the whole
// set atomically.
//
// The zero Keyring is empty. A Keyring is safe for concurrent use.
type Keyring struct {
	keys atomic.Pointer[map[string]*Key]
}

// NewKeyring returns a keyring holding keys. Two keys with one ID are an
// error.
func NewKeyring(keys ...*Key) (*Keyring, error) {
	r := &Keyring{}
	if err := r.Replace(keys...); err != nil {
		return nil, err
	}
	return r, nil
}

// Key implements [KeySource].
func (r *Keyring) Key(_ context.Context, id string) (*Key, error) {
	if m := r.keys.Load(); m != nil {
		if k, ok := (*m)[id]; ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
}

// Keys returns the keys, sorted by ID.
func (r *Keyring) Keys() []*Key {
	m := r.keys.Load()
	if m == nil {
		return nil
	}
	out := make([]*Key, 0, len(*m))
	for _, k := range *m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b *Key) int { return strings.Compare(a.id, b.id) })
	return out
}

// Replace replaces every key of the keyring with keys, atomically. Two keys
// with one ID are an error, and the keyring is then left unchanged.
func (r *Keyring) Replace(keys ...*Key) error {
	m := make(map[string]*Key, len(keys))
	for _, k := range keys {
		if k == nil {
			return fmt.Errorf("%w: nil key", ErrConfig)
		}
		if _, dup := m[k.id]; dup {
			return fmt.Errorf("%w: key ID %q used twice", ErrConfig, k.id)
		}
		m[k.id] = k
	}
	r.keys.Store(&m)
	return nil
}

// LoadFile replaces the keys with those of a [ParseKeyring] file. On error
// the keyring is left unchanged.
func (r *Keyring) LoadFile(path string) error {
	b, err := readLimited(path, maxKeyringSize)
	if err != nil {
		return err
	}
	keys, err := parseKeys(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return r.Replace(keys...)
}

// ParseKeyring parses a JWK Set ({"keys": [...]}) whose members are keys
// for [ParseKey]: public verification keys, each with "kid" and "sub", and
// secret "oct" content-encryption keys. A key that does not parse, a
// private signing key or a key ID used twice fails the whole set.
func ParseKeyring(data []byte) (*Keyring, error) {
	keys, err := parseKeys(data)
	if err != nil {
		return nil, err
	}
	return NewKeyring(keys...)
}

// LoadKeyring reads a [ParseKeyring] file.
func LoadKeyring(path string) (*Keyring, error) {
	r := &Keyring{}
	if err := r.LoadFile(path); err != nil {
		return nil, err
	}
	return r, nil
}

// maxKeys bounds the number of keys in one set.
const maxKeys = 100_000

type jwkSet struct {
	Keys []json.RawMessage `json:"keys"`
}

func decodeSet(data []byte) (*jwkSet, error) {
	if len(data) > maxKeyringSize {
		return nil, fmt.Errorf("%w: key set larger than %d bytes", ErrConfig, maxKeyringSize)
	}
	var set jwkSet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("%w: key set: %w", ErrConfig, err)
	}
	if set.Keys == nil {
		return nil, fmt.Errorf("%w: key set has no \"keys\" array", ErrConfig)
	}
	if len(set.Keys) > maxKeys {
		return nil, fmt.Errorf("%w: key set has more than %d keys", ErrConfig, maxKeys)
	}
	return &set, nil
}

func parseKeys(data []byte) ([]*Key, error) {
	set, err := decodeSet(data)
	if err != nil {
		return nil, err
	}
	keys := make([]*Key, 0, len(set.Keys))
	seen := make(map[string]bool, len(set.Keys))
	for i, raw := range set.Keys {
		k, err := ParseKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		if seen[k.id] {
			return nil, fmt.Errorf("%w: key ID %q used twice", ErrConfig, k.id)
		}
		seen[k.id] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// MarshalKeyring returns keys as a JWK Set, public keys only; a secret key
// is an error (a keyring given to a broker never holds content keys).
func MarshalKeyring(keys ...*Key) ([]byte, error) {
	set := struct {
		Keys []*Key `json:"keys"`
	}{Keys: keys}
	if set.Keys == nil {
		set.Keys = []*Key{}
	}
	return json.MarshalIndent(set, "", "  ")
}
