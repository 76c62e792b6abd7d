package testenv_test

import (
	"github.com/mqttsec/mqttsec/internal/testenv"
	"net"
	"testing"
)

func TestStartMosquitto(t *testing.T) {
	m := testenv.StartMosquitto(t, "allow_anonymous true")
	c, err := net.Dial("tcp", m.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
