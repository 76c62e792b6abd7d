package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mqttsec/mqttsec/scan"
)

// Output formats and exit codes shared by scan and lint.

// severityLevels are the severity names, lowest first, as scan and lint
// write them.
// parseFailOn returns the lowest severity that fails the command, or one
// above the highest for "none".
func parseFailOn(s string) (int, error) {
	if s == "none" {
		return int(scan.High) + 1, nil
	}
	sev, err := scan.ParseSeverity(s)
	if err != nil {
		return 0, fmt.Errorf("--fail-on %q: want info, low, medium, high or none", s)
	}
	return int(sev), nil
}

func checkFormat(f string) error {
	switch f {
	case "text", "json", "sarif":
		return nil
	}
	return fmt.Errorf("--format %q: want text, json or sarif", f)
}

// sarifRule and sarifResult are what writeSARIF needs of a check or rule
// and of a failed finding.
type sarifRule struct {
	ID, Title, Severity, Remediation string
}

type sarifResult struct {
	RuleID, Severity, Message string
	// URI is the artifact: a file path (relative paths are kept relative)
	// or the scanned broker's URL.
	URI  string
	Line int // 0: no region
}

// SARIF 2.1.0 (OASIS), the subset code-scanning tools read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool          `json:"tool"`
	Results []sarifResultEntry `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string            `json:"name"`
	InformationURI string            `json:"informationUri"`
	Rules          []sarifRuleEntry  `json:"rules"`
	Properties     map[string]string `json:"properties,omitempty"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRuleEntry struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	ShortDescription     sarifText       `json:"shortDescription"`
	Help                 sarifText       `json:"help"`
	DefaultConfiguration sarifConfig     `json:"defaultConfiguration"`
	Properties           sarifProperties `json:"properties"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifProperties struct {
	SecuritySeverity string   `json:"security-severity"`
	Tags             []string `json:"tags"`
}

type sarifResultEntry struct {
	RuleID    string          `json:"ruleId"`
	RuleIndex int             `json:"ruleIndex"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// sarifLevel maps a severity to a SARIF level and a GitHub
// security-severity score.
func sarifLevel(sev string) (level, score string) {
	switch sev {
	case "high":
		return "error", "8.0"
	case "medium":
		return "warning", "5.5"
	case "low":
		return "note", "3.0"
	}
	return "note", "1.0"
}

// writeSARIF writes one SARIF 2.1.0 run of tool with rules and the failed
// findings as results.
func writeSARIF(w io.Writer, tool string, rules []sarifRule, results []sarifResult) error {
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name:           "mqttsec",
			InformationURI: "https://github.com/mqttsec/mqttsec",
			Properties:     map[string]string{"command": tool},
		}},
		Results: []sarifResultEntry{},
	}
	index := map[string]int{}
	for _, r := range rules {
		level, score := sarifLevel(r.Severity)
		index[r.ID] = len(run.Tool.Driver.Rules)
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRuleEntry{
			ID:                   r.ID,
			Name:                 r.ID,
			ShortDescription:     sarifText{r.Title},
			Help:                 sarifText{r.Remediation},
			DefaultConfiguration: sarifConfig{level},
			Properties:           sarifProperties{SecuritySeverity: score, Tags: []string{"security", "mqtt"}},
		})
	}
	for _, r := range results {
		i, ok := index[r.RuleID]
		if !ok {
			return fmt.Errorf("sarif: result for unknown rule %q", r.RuleID)
		}
		level, _ := sarifLevel(r.Severity)
		loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: sarifArtifact{URI: sarifURI(r.URI)}}}
		if r.Line > 0 {
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: r.Line}
		}
		run.Results = append(run.Results, sarifResultEntry{
			RuleID: r.RuleID, RuleIndex: i, Level: level,
			Message:   sarifText{r.Message},
			Locations: []sarifLocation{loc},
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{run},
	})
}

// sarifURI writes a file path as a relative URI reference with forward
// slashes; URLs pass through.
func sarifURI(p string) string {
	if strings.Contains(p, "://") {
		return p
	}
	return filepath.ToSlash(p)
}

// writeReport writes rep in format: with text or sarif for those formats,
// as indented JSON for "json".
func writeReport(out io.Writer, format string, rep any, text func(), sarif func() error) error {
	switch format {
	case "text":
		text()
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "sarif":
		return sarif()
	}
	return nil
}
