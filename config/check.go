package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// fileRef is one file the configuration names.
type fileRef struct {
	path   []any  // the key's path
	file   string // as written
	secret bool   // a key, a password file, an HMAC secret
	asIs   bool   // file is not relative to the configuration's folder
	opt    bool   // a missing file is not an error
}

// files returns the files the configuration names, in file order.
func (f *File) files() []fileRef {
	var out []fileRef
	add := func(file string, secret bool, path ...any) {
		if file != "" {
			out = append(out, fileRef{path: path, file: file, secret: secret})
		}
	}
	for i, l := range f.Listeners {
		if t := l.TLS; t != nil {
			add(t.CertFile, false, "listeners", i, "tls", "cert_file")
			add(t.KeyFile, true, "listeners", i, "tls", "key_file")
			add(t.ClientCAFile, false, "listeners", i, "tls", "client_ca_file")
			for j, c := range t.CRLFiles {
				add(c, false, "listeners", i, "tls", "crl_files", j)
			}
		}
	}
	add(f.Auth.PasswordFile, true, "auth", "password_file")
	if j := f.Auth.JWT; j != nil {
		add(j.HMACSecretFile, true, "auth", "jwt", "hmac_secret_file")
		add(j.PublicKeyFile, false, "auth", "jwt", "public_key_file")
	}
	add(f.ACL.ACLFile, false, "acl", "acl_file")
	add(f.ACL.CasbinPolicy, false, "acl", "casbin_policy")
	for i, b := range f.Bridges {
		add(b.PasswordFile, true, "bridges", i, "password_file")
		add(b.TLS.CertFile, false, "bridges", i, "tls", "cert_file")
		add(b.TLS.KeyFile, true, "bridges", i, "tls", "key_file")
		add(b.TLS.CAFile, false, "bridges", i, "tls", "ca_file")
		for j, c := range b.TLS.CRLFiles {
			add(c, false, "bridges", i, "tls", "crl_files", j)
		}
	}
	if r := f.Redis; r != nil {
		add(r.PasswordFile, true, "redis", "password_file")
		if t := r.TLS; t != nil {
			add(t.CAFile, false, "redis", "tls", "ca_file")
			add(t.CertFile, false, "redis", "tls", "cert_file")
			add(t.KeyFile, true, "redis", "tls", "key_file")
		}
	}
	if r := f.RateLimit; r != nil && r.BansFile != "" {
		out = append(out, fileRef{path: []any{"ratelimit", "bans_file"}, file: r.BansFile, opt: true})
	}
	return out
}

// Check checks the files the configuration names, and the configuration
// file itself when it was read by [Load], without loading them:
// each must exist and be a regular file (symbolic links are followed), and
// unless insecure_file_permissions is set
//
//   - no file may be writable by its group or by others, nor belong to a
//     user other than root or the one running the broker (whoever may
//     change an acl_file or a CA bundle grants themselves access);
//   - a secret (a TLS private key, a password file, an HMAC secret) may
//     not be readable by others; its group may read it (0640, for a
//     broker running in the file's group).
//
// It returns every problem found, joined, each an [*Error] naming the key
// and the file.
func (f *File) Check() error {
	var errs []error
	refs := f.files()
	if f.loaded {
		// The configuration itself: whoever may change it may set its
		// insecure switches.
		refs = append([]fileRef{{file: f.name, asIs: true}}, refs...)
	}
	for _, r := range refs {
		p := r.file
		if !r.asIs {
			p = f.Path(p)
		}
		st, err := os.Stat(p)
		if err != nil && r.opt && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			msg := "cannot read " + p
			if errors.Is(err, fs.ErrNotExist) {
				msg = "no such file: " + p
			}
			errs = append(errs, f.errAt(wrapf(ErrFile, "%s", msg), r.path...))
			continue
		}
		if !st.Mode().IsRegular() {
			errs = append(errs, f.errAt(wrapf(ErrFile, "%s is not a regular file", p), r.path...))
			continue
		}
		if f.InsecureFilePermissions || !checkModes {
			continue
		}
		if msg := unsafeMode(st, r.secret); msg != "" {
			errs = append(errs, f.errAt(wrapf(ErrPermissions, "%s %s (mode %04o); fix it (chmod %s) or set insecure_file_permissions: true",
				p, msg, st.Mode().Perm(), fixMode(st.Mode().Perm(), r.secret)), r.path...))
			continue
		}
		if owner, ok := foreignOwner(st); ok {
			errs = append(errs, f.errAt(wrapf(ErrPermissions, "%s belongs to user %s, who may change it: make it root's or the broker user's (chown), or set insecure_file_permissions: true",
				p, owner), r.path...))
		}
	}
	return errors.Join(errs...)
}

func unsafeMode(st fs.FileInfo, secret bool) string {
	m := st.Mode().Perm()
	switch {
	case secret && m&0o004 != 0:
		return "is readable by every user"
	case m&0o002 != 0:
		return "is writable by every user"
	case m&0o020 != 0:
		return "is writable by its group"
	}
	return ""
}

// fixMode returns the chmod argument that makes m safe.
func fixMode(m fs.FileMode, secret bool) string {
	m &^= 0o022
	if secret {
		m &^= 0o007
	}
	return fmt.Sprintf("%04o", m)
}
