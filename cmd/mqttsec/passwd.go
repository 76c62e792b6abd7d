package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqttsec/mqttsec/auth"
)

func init() {
	rootCmd.AddCommand(newPasswdCmd())
}

// newPasswdCmd builds "mqttsec passwd", which manages password files like
// mosquitto_passwd does, writing bcrypt hashes by default and Mosquitto's
// "$7$" with -H sha512-pbkdf2.
func newPasswdCmd() *cobra.Command {
	var (
		create, del, batch, allowWeak bool
		scheme                        string
		cost, iterations              int
	)
	cmd := &cobra.Command{
		Use:   "passwd [-c] [-D] [-H SCHEME] FILE USER | passwd [-c] [-H SCHEME] -b FILE USER PASSWORD",
		Short: "Add, change or delete a user in a password file",
		Long: `passwd manages a password file in Mosquitto's format ("username:hash" lines).

Without -b it asks for the password twice (on the terminal, or as two lines on
standard input). -b takes the password from the command line, for scripts;
beware that command lines are visible to other local users.

The file is written atomically (temporary file, then rename) with mode 0600.
A replaced file keeps its owner and group (and its group read permission)
where the caller may set them, so the broker can still read it. When FILE is
a symbolic link, the file it points to is replaced.
New passwords must pass the strength policy: at least 12 characters, not the
user name, not a common password. Existing entries in any supported format
(bcrypt, argon2id, Mosquitto $6$ and $7$) are kept as they are.

New passwords are hashed with bcrypt by default, which mqttsec reads but
Mosquitto 2.0 does not (it reads only $6$ and $7$ lines, and refuses a login
whose line it cannot read). For a file a Mosquitto broker reads too, use
-H sha512-pbkdf2, as with mosquitto_passwd: Mosquitto's own "$7$" format
(PBKDF2-SHA512), written with --iterations rounds (210000 by default, as
OWASP recommends; mosquitto_passwd writes 101, which is fast to guess, and
Mosquitto verifies on its one event thread, so mind the cost per login).
-H sha512 ("$6$", one round of SHA-512) is refused: it is too fast to be a
password hash.

Options come before FILE; every argument after FILE is taken as is, so a
password may start with '-'.

Exit status: 0 on success, 1 on failure, 2 on a usage error.`,
		Example: `  mqttsec passwd -c /etc/mqttsec/passwd alice
  mqttsec passwd -b /etc/mqttsec/passwd sensor-42 "$SENSOR_PASSWORD"
  mqttsec passwd -H sha512-pbkdf2 /etc/mosquitto/passwd alice   # a file Mosquitto 2.0 reads
  mqttsec passwd -D /etc/mqttsec/passwd alice`,
		Args: func(cmd *cobra.Command, args []string) error {
			want := 2
			if batch {
				want = 3
			}
			if len(args) != want {
				return &exitError{code: 2, err: fmt.Errorf("want %d arguments, got %d; see \"mqttsec passwd --help\"", want, len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if create && del {
				return &exitError{code: 2, err: errors.New("-c and -D cannot be combined")}
			}
			if del && batch {
				return &exitError{code: 2, err: errors.New("-D and -b cannot be combined")}
			}
			opt := auth.HashOptions{BcryptCost: cost, PBKDF2Iterations: iterations}
			switch scheme {
			case "bcrypt":
				opt.Scheme = auth.Bcrypt
			case "argon2id":
				opt.Scheme = auth.Argon2id
			case "pbkdf2", "sha512-pbkdf2":
				opt.Scheme = auth.MosquittoPBKDF2
			case "sha512":
				return &exitError{code: 2, err: errors.New(`-H sha512 ("$6$", one round of SHA-512) is too fast to be a password hash; ` +
					`use -H sha512-pbkdf2 ("$7$"), which Mosquitto reads too`)}
			default:
				return &exitError{code: 2, err: fmt.Errorf("unknown -H/--scheme %q (bcrypt, argon2id or sha512-pbkdf2)", scheme)}
			}
			file, user := args[0], args[1]

			pf := auth.NewPasswordFile()
			if !create {
				var err error
				pf, err = auth.LoadPasswordFile(file)
				if errors.Is(err, fs.ErrNotExist) {
					return &exitError{code: 1, err: fmt.Errorf("%s does not exist; use -c to create it", file)}
				}
				if err != nil {
					return &exitError{code: 1, err: err}
				}
			}
			if !del {
				// Before asking for a password: a name the file cannot
				// hold would be lost (a leading '#' makes a comment).
				if err := auth.ValidateUsername(user); err != nil {
					return &exitError{code: 1, err: err}
				}
			}
			if del {
				if err := pf.Delete(user); err != nil {
					return &exitError{code: 1, err: err}
				}
				return writePasswd(pf, file)
			}

			var pw []byte
			if batch {
				pw = []byte(args[2])
			} else {
				var err error
				if pw, err = readNewPassword(cmd); err != nil {
					return &exitError{code: 1, err: err}
				}
			}
			if !allowWeak {
				if err := (auth.Policy{}).Check(user, pw); err != nil {
					return &exitError{code: 1, err: err}
				}
			}
			h, err := auth.HashPassword(pw, opt)
			if err != nil {
				code := 1
				if errors.Is(err, auth.ErrConfig) {
					code = 2
				}
				return &exitError{code: code, err: err}
			}
			if err := pf.Set(user, h); err != nil {
				return &exitError{code: 1, err: err}
			}
			return writePasswd(pf, file)
		},
	}
	f := cmd.Flags()
	// Options come before FILE: everything after it is an argument, so a
	// password that starts with '-' is taken as a password, not parsed as
	// flags (and quoted back in an "unknown flag" error).
	f.SetInterspersed(false)
	f.BoolVarP(&create, "create", "c", false, "create a new file, overwriting an existing one")
	f.BoolVarP(&del, "delete", "D", false, "delete USER")
	f.BoolVarP(&batch, "batch", "b", false, "take the password from the command line")
	f.StringVarP(&scheme, "scheme", "H", "bcrypt",
		"hash scheme for the new password: bcrypt (not readable by Mosquitto 2.0), argon2id, or sha512-pbkdf2 (Mosquitto's $7$, alias pbkdf2)")
	f.IntVar(&cost, "cost", auth.DefaultBcryptCost, "bcrypt cost (4..16)")
	f.IntVar(&iterations, "iterations", auth.DefaultPBKDF2Iterations, "sha512-pbkdf2 iterations")
	f.BoolVar(&allowWeak, "allow-weak-password", false, "skip the password strength policy (tests only)")
	return cmd
}

func writePasswd(pf *auth.PasswordFile, file string) error {
	if err := pf.WriteFile(file); err != nil {
		return &exitError{code: 1, err: err}
	}
	return nil
}

// readNewPassword asks for the password twice: without echo on a terminal,
// or as two lines of standard input otherwise.
func readNewPassword(cmd *cobra.Command) ([]byte, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		prompt := cmd.ErrOrStderr()
		fmt.Fprint(prompt, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		fmt.Fprint(prompt, "Reenter password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		return samePassword(a, b)
	}
	r := bufio.NewReader(in)
	a, err := readPasswordLine(r)
	if err != nil {
		return nil, err
	}
	b, err := readPasswordLine(r)
	if err != nil {
		return nil, err
	}
	return samePassword(a, b)
}

func readPasswordLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return nil, errors.New("reading password: expected two lines on standard input")
	}
	return []byte(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")), nil
}

func samePassword(a, b []byte) ([]byte, error) {
	if string(a) != string(b) {
		return nil, errors.New("passwords do not match")
	}
	if len(a) == 0 {
		return nil, errors.New("empty password")
	}
	return a, nil
}
