package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mqttsec/mqttsec/integrity"
)

func init() {
	rootCmd.AddCommand(newKeysCmd())
}

// newKeysCmd builds "mqttsec keys", which manages the JWK keys of signed
// (and encrypted) payloads: device key pairs, content keys and keyrings.
func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate payload-signing keys and manage keyrings (JWK, JWK Sets)",
		Long: `keys manages the keys of end-to-end signed MQTT payloads (package integrity):

  generate   a device key pair (EdDSA or ES256) bound to a subject, or a
             content-encryption key (A256GCM)
  public     print the public JWK of a private key file
  add        add a public key (or a content key, with --secret) to a keyring
  list       list the keys of a keyring

A device keeps its private JWK; brokers and receivers get the public JWK in
a keyring file (a JWK Set, {"keys": [...]}). The key's "sub" must be the
subject the device authenticates as: a broker refuses a message signed with
a key bound to another subject.

Exit status: 0 on success, 1 on failure, 2 on a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return &exitError{code: 2, err: errors.New("missing subcommand; see \"mqttsec keys --help\"")}
		},
	}
	cmd.AddCommand(newKeysGenerateCmd(), newKeysPublicCmd(), newKeysAddCmd(), newKeysListCmd())
	return cmd
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

func failErr(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: 1, err: err}
}

func newKeysGenerateCmd() *cobra.Command {
	var alg, kid, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "generate --out FILE [--alg EdDSA|ES256] [--kid ID] SUBJECT | generate --alg A256GCM --kid ID --out FILE",
		Short: "Generate a device key pair or a content-encryption key",
		Long: `generate writes a new private key as a JWK to FILE (mode 0600) and prints
the public JWK on standard output, ready for "mqttsec keys add".

SUBJECT is the identity the device authenticates as (its user name, token
subject or certificate name). The key ID defaults to SUBJECT followed by a
random suffix, so that a device's next key gets a new ID (rotation).

With --alg A256GCM it writes a secret content-encryption key (no subject,
--kid required) and prints nothing: give the file to the devices of the
group only, never to a broker.`,
		Example: `  mqttsec keys generate --out sensor-7.jwk sensor-7 > sensor-7.pub.jwk
  mqttsec keys generate --alg ES256 --kid sensor-7-2027 --out sensor-7.jwk sensor-7
  mqttsec keys generate --alg A256GCM --kid plant-1-2027 --out plant-1.key.jwk`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr("--out is required: the private key is written to a file, never to the terminal")
			}
			var data, pub []byte
			switch integrity.Algorithm(alg) {
			case integrity.A256GCM:
				if len(args) != 0 {
					return usageErr("a content key has no subject; got %d arguments", len(args))
				}
				if kid == "" {
					return usageErr("--kid is required for a content key")
				}
				k, err := integrity.GenerateSecretKey(kid)
				if err != nil {
					return usageErr("%v", err)
				}
				if data, err = k.SecretJWK(); err != nil {
					return failErr(err)
				}
			case integrity.EdDSA, integrity.ES256:
				if len(args) != 1 {
					return usageErr("want SUBJECT, got %d arguments; see \"mqttsec keys generate --help\"", len(args))
				}
				if kid == "" {
					suffix := make([]byte, 4)
					if _, err := rand.Read(suffix); err != nil {
						return failErr(err)
					}
					kid = args[0] + "-" + hex.EncodeToString(suffix)
				}
				k, err := integrity.GenerateKey(integrity.Algorithm(alg), kid, args[0])
				if err != nil {
					return usageErr("%v", err)
				}
				if data, err = k.PrivateJWK(); err != nil {
					return failErr(err)
				}
				if pub, err = json.Marshal(k.Public()); err != nil {
					return failErr(err)
				}
			default:
				return usageErr("unknown --alg %q (EdDSA, ES256 or A256GCM)", alg)
			}
			if err := writeNew(out, append(data, '\n'), force); err != nil {
				return failErr(err)
			}
			if pub != nil {
				fmt.Fprintln(cmd.OutOrStdout(), string(pub))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&alg, "alg", string(integrity.EdDSA), "algorithm: EdDSA, ES256 (signing keys) or A256GCM (content key)")
	f.StringVar(&kid, "kid", "", "key ID (default: SUBJECT-<random>)")
	f.StringVarP(&out, "out", "o", "", "file to write the private key to (mode 0600)")
	f.BoolVar(&force, "force", false, "overwrite an existing FILE")
	return cmd
}

// writeNew writes a private file with mode 0600, refusing to replace an
// existing one unless force.
func writeNew(path string, data []byte, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; use --force to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func newKeysPublicCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "public FILE",
		Short: "Print the public JWK of a private key file",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("want FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := integrity.LoadPrivateKey(args[0])
			if err != nil {
				return failErr(err)
			}
			pub, err := json.Marshal(k.Public())
			if err != nil {
				return failErr(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(pub))
			return nil
		},
	}
}

func newKeysAddCmd() *cobra.Command {
	var replace, secret bool
	cmd := &cobra.Command{
		Use:   "add [--replace] [--secret] KEYRING JWK-FILE|-",
		Short: "Add a public key to a keyring file (created if missing)",
		Long: `add reads a JWK (from a file, or "-" for standard input) and adds it to
KEYRING, a JWK Set file, which is created when missing. The keyring is
checked whole before and after, and written atomically.

A public key is added as is. A private key file is refused: add its public
JWK ("mqttsec keys public FILE"). A content key (A256GCM) is refused unless
--secret: a keyring with content keys must stay with the devices (the file
is then kept at mode 0600). A key ID already in the keyring is refused unless
--replace.`,
		Example: `  mqttsec keys generate --out sensor-7.jwk sensor-7 | mqttsec keys add keyring.json -
  mqttsec keys add --replace keyring.json sensor-7.pub.jwk`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageErr("want KEYRING and JWK-FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ringPath, src := args[0], args[1]
			var raw []byte
			var err error
			if src == "-" {
				raw, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
			} else {
				raw, err = os.ReadFile(src)
			}
			if err != nil {
				return failErr(err)
			}
			raw = bytes.TrimSpace(raw)
			k, err := integrity.ParseKey(raw)
			if err != nil {
				if _, perr := integrity.ParsePrivateKey(raw); perr == nil {
					return failErr(fmt.Errorf("%s is a private key; add its public key (mqttsec keys public)", src))
				}
				return failErr(err)
			}
			if k.Secret() && !secret {
				return failErr(fmt.Errorf("key %q is a secret content key; --secret adds it (never to a broker's keyring)", k.ID()))
			}
			keys, mode, err := readKeyring(ringPath)
			if err != nil {
				return failErr(err)
			}
			replaced := false
			for i, old := range keys {
				if old.ID() == k.ID() {
					if !replace {
						return failErr(fmt.Errorf("key ID %q is already in %s; --replace replaces it", k.ID(), ringPath))
					}
					keys[i], replaced = k, true
				}
			}
			if !replaced {
				keys = append(keys, k)
			}
			if err := writeKeyring(ringPath, keys, mode); err != nil {
				return failErr(err)
			}
			verb := "added"
			if replaced {
				verb = "replaced"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s key %q (%s, subject %q) in %s\n", verb, k.ID(), k.Algorithm(), k.Subject(), ringPath)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&replace, "replace", false, "replace a key with the same key ID")
	f.BoolVar(&secret, "secret", false, "allow adding a secret content-encryption key")
	return cmd
}

// readKeyring returns the keys of a keyring file, none when it does not
// exist, and the mode to write it back with.
func readKeyring(path string) ([]*integrity.Key, os.FileMode, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0o644, nil
	}
	if err != nil {
		return nil, 0, err
	}
	ring, err := integrity.LoadKeyring(path)
	if err != nil {
		return nil, 0, err
	}
	return ring.Keys(), st.Mode().Perm(), nil
}

// writeKeyring writes keys as a JWK Set, atomically (temporary file, then
// rename). A keyring holding a secret key is written with mode 0600.
func writeKeyring(path string, keys []*integrity.Key, mode os.FileMode) error {
	// Check the set as a whole (duplicate IDs) before writing it.
	if _, err := integrity.NewKeyring(keys...); err != nil {
		return err
	}
	entries := make([]json.RawMessage, 0, len(keys))
	for _, k := range keys {
		var b []byte
		var err error
		if k.Secret() {
			b, err = k.SecretJWK()
			mode = 0o600
		} else {
			b, err = json.Marshal(k)
		}
		if err != nil {
			return err
		}
		entries = append(entries, b)
	}
	data, err := json.MarshalIndent(struct {
		Keys []json.RawMessage `json:"keys"`
	}{entries}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if _, err := integrity.ParseKeyring(data); err != nil {
		return fmt.Errorf("refusing to write a keyring that does not parse: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newKeysListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list KEYRING",
		Short: "List the keys of a keyring file",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErr("want KEYRING, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ring, err := integrity.LoadKeyring(args[0])
			if err != nil {
				return failErr(err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KID\tALG\tSUBJECT")
			for _, k := range ring.Keys() {
				sub := k.Subject()
				if k.Secret() {
					sub = "(content key)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", k.ID(), k.Algorithm(), sub)
			}
			return failErr(w.Flush())
		},
	}
}
