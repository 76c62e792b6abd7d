package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// sarifHit is a result read back from a SARIF log.
type sarifHit struct {
	ruleID, level, uri string
	line               int
}

// requireSARIF checks the structure SARIF 2.1.0 requires of what scan and
// lint write (version, schema, one run, a tool driver with rules, results
// that reference those rules, valid levels, locations), and that every
// object holds only properties the SARIF schema defines for it (the
// schema forbids others). It returns the results.
func requireSARIF(t *testing.T, data []byte, command string) []sarifHit {
	t.Helper()
	var log map[string]any
	require.NoError(t, json.Unmarshal(data, &log), string(data))
	only := func(obj map[string]any, what string, allowed ...string) {
		t.Helper()
		for k := range obj {
			require.Contains(t, allowed, k, "%s: property %q is not in SARIF 2.1.0", what, k)
		}
	}
	obj := func(v any, what string) map[string]any {
		t.Helper()
		m, ok := v.(map[string]any)
		require.True(t, ok, "%s: not an object: %v", what, v)
		return m
	}
	text := func(v any, what string) string {
		t.Helper()
		m := obj(v, what)
		only(m, what, "text", "markdown")
		s, ok := m["text"].(string)
		require.True(t, ok && s != "", "%s.text", what)
		return s
	}
	levels := []string{"none", "note", "warning", "error"}

	only(log, "log", "$schema", "version", "runs")
	require.Equal(t, "2.1.0", log["version"])
	require.Equal(t, "https://json.schemastore.org/sarif-2.1.0.json", log["$schema"])
	runs, ok := log["runs"].([]any)
	require.True(t, ok)
	require.Len(t, runs, 1)
	run := obj(runs[0], "run")
	only(run, "run", "tool", "results")
	tool := obj(run["tool"], "tool")
	only(tool, "tool", "driver")
	driver := obj(tool["driver"], "driver")
	only(driver, "driver", "name", "informationUri", "rules", "properties")
	require.Equal(t, "mqttsec", driver["name"])
	require.Equal(t, command, obj(driver["properties"], "driver.properties")["command"])

	rules, ok := driver["rules"].([]any)
	require.True(t, ok)
	require.NotEmpty(t, rules)
	var ids []string
	for i, r := range rules {
		rule := obj(r, "rule")
		only(rule, "rule", "id", "name", "shortDescription", "help", "defaultConfiguration", "properties")
		id, ok := rule["id"].(string)
		require.True(t, ok && id != "", "rule %d id", i)
		require.NotContains(t, ids, id, "duplicate rule")
		ids = append(ids, id)
		text(rule["shortDescription"], id+".shortDescription")
		text(rule["help"], id+".help")
		conf := obj(rule["defaultConfiguration"], id+".defaultConfiguration")
		only(conf, "defaultConfiguration", "level")
		require.Contains(t, levels, conf["level"])
		props := obj(rule["properties"], id+".properties")
		score, err := strconv.ParseFloat(props["security-severity"].(string), 64)
		require.NoError(t, err)
		require.True(t, score > 0 && score <= 10, "security-severity %v", score)
	}

	results, ok := run["results"].([]any)
	require.True(t, ok, "results is an array, even when empty")
	var hits []sarifHit
	for _, r := range results {
		res := obj(r, "result")
		only(res, "result", "ruleId", "ruleIndex", "level", "message", "locations")
		h := sarifHit{ruleID: res["ruleId"].(string), level: res["level"].(string)}
		idx := slices.Index(ids, h.ruleID)
		require.GreaterOrEqual(t, idx, 0, "result for undeclared rule %q", h.ruleID)
		require.Equal(t, float64(idx), res["ruleIndex"], "ruleIndex of %q", h.ruleID)
		require.Contains(t, levels, h.level)
		require.NotEqual(t, "none", h.level, "a failed finding")
		text(res["message"], "result.message")
		locs, ok := res["locations"].([]any)
		require.True(t, ok && len(locs) == 1)
		loc := obj(locs[0], "location")
		only(loc, "location", "physicalLocation")
		phys := obj(loc["physicalLocation"], "physicalLocation")
		only(phys, "physicalLocation", "artifactLocation", "region")
		art := obj(phys["artifactLocation"], "artifactLocation")
		only(art, "artifactLocation", "uri")
		h.uri, _ = art["uri"].(string)
		require.NotEmpty(t, h.uri)
		if reg, ok := phys["region"]; ok {
			region := obj(reg, "region")
			only(region, "region", "startLine")
			line := region["startLine"].(float64)
			require.GreaterOrEqual(t, line, 1.0)
			h.line = int(line)
		}
		hits = append(hits, h)
	}
	return hits
}

func TestLintCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), mode))
		return p
	}
	write("passwd", "alice:hunter2\n", 0o600)
	write("acl", "topic readwrite #\n", 0o600)
	conf := write("mosquitto.conf", "listener 1883 127.0.0.1\nallow_anonymous true\npassword_file passwd\nacl_file acl\n", 0o600)
	clean := write("clean.conf", "listener 1883 127.0.0.1\nallow_anonymous false\n", 0o600)

	run := func(args ...string) (string, int) {
		out, err := execute(newLintCmd(), "", args...)
		return out, exitCode(err)
	}

	out, code := run(conf)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, conf+":2: high allow-anonymous: allow_anonymous true")
	require.Contains(t, out, filepath.Join(dir, "passwd")+":1: high password-not-hashed: user \"alice\"")
	require.Contains(t, out, filepath.Join(dir, "acl")+":1: high anonymous-wildcard-acl")
	require.NotContains(t, out, "hunter2")
	require.Contains(t, out, "3 finding(s): 3 high, 0 medium, 0 low")

	out, code = run(clean)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "clean.conf: no findings")

	out, code = run(conf, "--format", "json", "--fail-on", "none")
	require.Equal(t, 0, code, out)
	var rep struct {
		Files    []string         `json:"files"`
		Findings []map[string]any `json:"findings"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Files, 3)
	require.Len(t, rep.Findings, 3)
	for _, f := range rep.Findings {
		for _, k := range []string{"id", "title", "severity", "status", "evidence", "remediation", "file"} {
			require.IsType(t, "", f[k], k)
		}
		require.IsType(t, 0.0, f["line"])
		require.Equal(t, "fail", f["status"])
	}

	out, code = run(conf, "--format", "sarif", "--fail-on", "high")
	require.Equal(t, 1, code, out)
	hits := requireSARIF(t, []byte(out), "lint")
	require.Len(t, hits, 3)
	require.Equal(t, sarifHit{ruleID: "allow-anonymous", level: "error", uri: filepath.ToSlash(conf), line: 2}, hits[0])

	// An empty report is valid SARIF too.
	out, code = run(clean, "--format", "sarif")
	require.Equal(t, 0, code, out)
	require.Empty(t, requireSARIF(t, []byte(out), "lint"))

	for _, bad := range [][]string{
		{filepath.Join(dir, "missing.conf")},
		{conf, "--format", "html"},
		{conf, "--fail-on", "sometimes"},
		{conf, "--type", "nginx"},
		{write("policy.yaml", "x: 1\n", 0o600)},
	} {
		out, code := run(bad...)
		require.Equal(t, 2, code, "%v: %s", bad, out)
	}
}

// TestACLLintAlias: "acl lint" is "lint" for one policy file, with its
// old flags, and its JSON and SARIF too.
func TestACLLintAlias(t *testing.T) {
	p := writeFile(t, "acl_file", "topic read #\nuser bob\ntopic readwrite bob/#\n")
	out, code := runACL(t, "lint", p, "--format", "sarif")
	require.Equal(t, 1, code, out)
	hits := requireSARIF(t, []byte(out), "lint")
	require.Equal(t, []sarifHit{{ruleID: "anonymous-wildcard-acl", level: "error", uri: filepath.ToSlash(p), line: 1}}, hits)

	out, code = runACL(t, "lint", "--casbin", p)
	require.Equal(t, 2, code, "not a Casbin policy: %s", out)
	out, code = runACL(t, "lint", "--casbin", "--mosquitto", p)
	require.Equal(t, 2, code, out)
}
