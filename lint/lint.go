package lint

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mqttsec/mqttsec/internal/severity"
)

// ErrFormat is returned for a file whose format lint does not recognise
// or does not support.
var ErrFormat = errors.New("lint: unsupported file format")

// Severity ranks a finding: info, low, medium, high. It is the same type
// in packages scan and lint, so reports of both compare alike.
type Severity = severity.Severity

// The severities, lowest first.
const (
	// Info is a fact worth knowing that is not a weakness by itself.
	Info = severity.Info
	// Low is a weakness that needs other conditions to be exploited.
	Low = severity.Low
	// Medium is a weakness that exposes data or availability in some
	// deployments.
	Medium = severity.Medium
	// High is a weakness that lets an outsider read, write or disrupt.
	High = severity.High
)

// ParseSeverity parses a severity name as [Severity.String] writes it.
func ParseSeverity(name string) (Severity, error) {
	s, err := severity.Parse(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", "lint", err)
	}
	return s, nil
}

// StatusFail is the status of every finding: a finding is a failed check.
// It is there so that lint and scan findings have one shape.
const StatusFail = "fail"

// Finding is one problem in one file. Its JSON form is the documented
// contract of `mqttsec lint --format json`.
type Finding struct {
	// ID is stable across versions, such as "allow-anonymous".
	ID string `json:"id"`
	// Title says what is wrong, in general.
	Title string `json:"title"`
	// Severity is how bad it is.
	Severity Severity `json:"severity"`
	// Status is always [StatusFail].
	Status string `json:"status"`
	// Evidence says what was found, where. It never contains a password
	// or a hash.
	Evidence string `json:"evidence"`
	// Remediation says how to fix it.
	Remediation string `json:"remediation"`
	// File is the file the finding is about, as given or as referenced
	// (resolved against the referencing file's folder).
	File string `json:"file"`
	// Line is the 1-based line, or 0 for the file as a whole.
	Line int `json:"line"`
}

// Report is the result of [Files].
type Report struct {
	// Files lists every file read, those given and those they reference,
	// in the order they were read.
	Files []string `json:"files"`
	// Findings are sorted by file (in the order of Files), line and ID.
	Findings []Finding `json:"findings"`
}

// Failed returns the findings of severity min or higher.
func (r Report) Failed(min Severity) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Severity >= min {
			out = append(out, f)
		}
	}
	return out
}

// Options configure [Files]. The zero value detects each file's format.
type Options struct {
	// Format forces the format of every file given (not of the files they
	// reference): one of [Formats]. Empty means detect it from the name
	// and content.
	Format string
	// ClientIDBound says the broker binds client IDs to identities (an
	// mqttsec clientid.Binding, say), which makes %c rules as safe as %u:
	// their findings are left out. A Mosquitto configuration says it
	// itself (use_username_as_clientid).
	ClientIDBound bool
}

// Formats returns the names of the formats lint reads.
func Formats() []string {
	var out []string
	for _, f := range formats() {
		out = append(out, f.name)
	}
	return out
}

// format is one kind of configuration file. New formats (our own YAML,
// once package config exists) plug in here: a name, a detector and a
// checker that may lint the files it references through the linter.
type format struct {
	name   string
	detect func(path string, data []byte) bool
	lint   func(l *linter, path string, data []byte) error
}

func formats() []format {
	return []format{
		{"mosquitto", looksConf, func(l *linter, p string, d []byte) error { return l.mosquittoConf(p, d) }},
		{"mosquitto-passwd", looksPasswd, func(l *linter, p string, d []byte) error {
			if mode, err := l.fs.mode(p); err == nil && mode&0o004 != 0 {
				l.add("world-readable-file", p, 0, "password file %q is readable by every local user (mode %04o)", p, mode)
			}
			l.passwordFile(p, d)
			return nil
		}},
		{"mosquitto-acl", looksMosquittoACL, func(l *linter, p string, d []byte) error { return l.mosquittoACL(p, d, aclContext{}) }},
		{"casbin", looksCasbin, func(l *linter, p string, d []byte) error { return l.casbinPolicy(p, d) }},
	}
}

// Files lints each file: a Mosquitto mosquitto.conf (with the files it
// includes and references: include_dir, password_file, acl_file, key
// files), a Mosquitto password file, a Mosquitto acl_file or a Casbin
// policy for acl.Model. A file given that cannot be read, recognised or
// parsed is an error; a referenced one that cannot be is a finding.
func Files(paths []string, opts Options) (Report, error) {
	l := newLinter(osFS{})
	l.opt = opts
	for _, p := range paths {
		data, err := l.fs.readFile(p)
		if err != nil {
			return l.report(), err
		}
		l.read(p)
		f, err := pickFormat(p, data, opts.Format)
		if err != nil {
			return l.report(), err
		}
		if err := f.lint(l, p, data); err != nil {
			return l.report(), fmt.Errorf("%s: %w", p, err)
		}
	}
	return l.report(), nil
}

func pickFormat(path string, data []byte, name string) (format, error) {
	all := formats()
	if name != "" {
		for _, f := range all {
			if f.name == name {
				return f, nil
			}
		}
		return format{}, fmt.Errorf("%w: %q (want one of %s)", ErrFormat, name, strings.Join(Formats(), ", "))
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		return format{}, fmt.Errorf("%w: %s: the mqttsec YAML configuration is not supported yet", ErrFormat, path)
	}
	for _, f := range all {
		if f.detect(path, data) {
			return f, nil
		}
	}
	return format{}, fmt.Errorf("%w: %s: not a Mosquitto configuration, password file or acl_file, nor a Casbin policy (give the format)", ErrFormat, path)
}

// significantLines returns the lines that are neither blank nor comments.
func significantLines(data []byte) []string {
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l != "" && l[0] != '#' {
			out = append(out, l)
		}
	}
	return out
}

func firstToken(l string) string {
	if i := strings.IndexAny(l, " \t"); i >= 0 {
		return l[:i]
	}
	return l
}

// looksPasswd: "user:hash" lines, and no line with white space (every
// configuration or ACL line has some; a broken line without a colon does
// not make a password file something else).
func looksPasswd(_ string, data []byte) bool {
	colon := false
	for _, l := range significantLines(data) {
		if strings.ContainsAny(l, " \t") {
			return false
		}
		colon = colon || strings.Contains(l, ":")
	}
	return colon
}

func looksMosquittoACL(_ string, data []byte) bool {
	lines := significantLines(data)
	for _, l := range lines {
		switch firstToken(l) {
		case "topic", "pattern", "user":
		default:
			return false
		}
	}
	return len(lines) > 0
}

func looksCasbin(_ string, data []byte) bool {
	lines := significantLines(data)
	if len(lines) == 0 {
		return false
	}
	first := strings.TrimSpace(strings.SplitN(lines[0], ",", 2)[0])
	return strings.Contains(lines[0], ",") && (first == "p" || first == "g")
}

func looksConf(path string, data []byte) bool {
	if strings.HasSuffix(path, ".conf") && !looksMosquittoACL(path, data) {
		return true
	}
	lines := significantLines(data)
	for _, l := range lines {
		if _, ok := confKeys[firstToken(l)]; !ok && !strings.HasPrefix(l, "plugin_opt_") && !strings.HasPrefix(l, "auth_opt_") {
			return false
		}
	}
	return len(lines) > 0 && !looksMosquittoACL(path, data)
}

// linter collects the findings of one Files call.
type linter struct {
	opt      Options
	fs       fileSystem
	files    []string
	seen     map[string]bool // files linted, so a file referenced twice is linted once
	findings []Finding
}

func newLinter(fsys fileSystem) *linter {
	return &linter{fs: fsys, seen: map[string]bool{}}
}

// read records a file as read.
func (l *linter) read(path string) {
	if !slices.Contains(l.files, path) {
		l.files = append(l.files, path)
	}
}

// add records a finding of rule id.
func (l *linter) add(id, file string, line int, format string, args ...any) {
	r, ok := rules[id]
	if !ok {
		panic("lint: unknown rule " + id)
	}
	l.findings = append(l.findings, Finding{
		ID: id, Title: r.Title, Severity: r.Severity, Status: StatusFail,
		Evidence: fmt.Sprintf(format, args...), Remediation: r.Remediation,
		File: file, Line: line,
	})
}

// report returns the findings, deduplicated and sorted.
func (l *linter) report() Report {
	order := map[string]int{}
	for i, f := range l.files {
		order[f] = i
	}
	type key struct {
		id, file string
		line     int
		evidence string
	}
	seen := map[key]bool{}
	out := []Finding{} // "findings": [] in JSON, never null
	for _, f := range l.findings {
		k := key{f.ID, f.File, f.Line, f.Evidence}
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b Finding) int {
		if c := order[a.File] - order[b.File]; c != 0 {
			return c
		}
		if c := a.Line - b.Line; c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return Report{Files: slices.Clone(l.files), Findings: out}
}

// maxFileSize bounds every file lint reads.
const maxFileSize = 16 << 20

// fileSystem is what lint reads: the operating system's files, or a map in
// tests and fuzzing.
type fileSystem interface {
	readFile(path string) ([]byte, error)
	// readDir returns the names of the regular files in dir.
	readDir(dir string) ([]string, error)
	// mode returns the permission bits of path.
	mode(path string) (fs.FileMode, error)
}

type osFS struct{}

func (osFS) readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(f); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (osFS) readDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (osFS) mode(path string) (fs.FileMode, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Mode().Perm(), nil
}
