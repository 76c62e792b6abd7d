package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the mqttsec binary the process tests build once per test
// binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mqttsec-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
	buildOut  []byte
)

// mqttsecBinary builds ./cmd/mqttsec once (the first test that needs it
// pays) and returns the path of the binary.
func mqttsecBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildPath = filepath.Join(binDir, "mqttsec")
		cmd := exec.Command("go", "build", "-o", buildPath, ".")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build: %v\n%s", buildErr, buildOut)
	}
	return buildPath
}
