package auth_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/auth"
)

func TestParseACLClaim(t *testing.T) {
	tr, fa := true, false
	g, err := auth.ParseACLClaim([]byte(`[
		{"permission": "allow", "action": "publish", "topic": "t/${clientid}"},
		{"permission": "allow", "action": "subscribe", "topic": "t/1/#", "qos": [1]},
		{"permission": "deny", "action": "publish", "topic": "t/2", "retain": true},
		{"permission": "deny", "action": "all", "topic": "t/3", "qos": [0, 2], "retain": false}
	]`))
	require.NoError(t, err)
	require.Equal(t, []mqttsec.Grant{
		{Allow: true, Access: mqttsec.Publish, Topic: "t/${clientid}"},
		{Allow: true, Access: mqttsec.Subscribe, Topic: "t/1/#", QoS: []byte{1}},
		{Allow: false, Access: mqttsec.Publish, Topic: "t/2", Retain: &tr},
		{Allow: false, Access: mqttsec.Publish | mqttsec.Subscribe, Topic: "t/3", QoS: []byte{0, 2}, Retain: &fa},
	}, g)

	g, err = auth.ParseACLClaim([]byte(`[]`))
	require.NoError(t, err)
	require.Empty(t, g)

	for name, raw := range map[string]string{
		"not json":        `[`,
		"old format":      `{"pub": ["a"], "sub": ["b"]}`,
		"null":            `null`,
		"string rule":     `["a"]`,
		"missing topic":   `[{"permission": "allow", "action": "publish"}]`,
		"missing action":  `[{"permission": "allow", "topic": "a"}]`,
		"missing perm":    `[{"action": "publish", "topic": "a"}]`,
		"bad permission":  `[{"permission": "Allow", "action": "publish", "topic": "a"}]`,
		"bad action":      `[{"permission": "allow", "action": "pub", "topic": "a"}]`,
		"unknown field":   `[{"permission": "allow", "action": "publish", "topic": "a", "clientid_re": "x"}]`,
		"duplicate field": `[{"permission": "allow", "permission": "deny", "action": "publish", "topic": "a"}]`,
		"eq prefix":       `[{"permission": "allow", "action": "publish", "topic": "eq a/#"}]`,
		"bad filter":      `[{"permission": "allow", "action": "publish", "topic": "a/#/b"}]`,
		"empty topic":     `[{"permission": "allow", "action": "publish", "topic": ""}]`,
		"topic number":    `[{"permission": "allow", "action": "publish", "topic": 5}]`,
		"qos 3":           `[{"permission": "allow", "action": "publish", "topic": "a", "qos": [3]}]`,
		"qos string":      `[{"permission": "allow", "action": "publish", "topic": "a", "qos": ["1"]}]`,
		"qos float":       `[{"permission": "allow", "action": "publish", "topic": "a", "qos": [1.0]}]`,
		"qos scalar":      `[{"permission": "allow", "action": "publish", "topic": "a", "qos": 1}]`,
		"qos empty":       `[{"permission": "allow", "action": "publish", "topic": "a", "qos": []}]`,
		"qos duplicate":   `[{"permission": "allow", "action": "publish", "topic": "a", "qos": [1, 1]}]`,
		"retain string":   `[{"permission": "allow", "action": "publish", "topic": "a", "retain": "true"}]`,
		"retain null":     `[{"permission": "allow", "action": "publish", "topic": "a", "retain": null}]`,
		"trailing data":   `[] []`,
		"permission null": `[{"permission": null, "action": "publish", "topic": "a"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auth.ParseACLClaim([]byte(raw))
			require.ErrorIs(t, err, auth.ErrMalformedACL)
		})
	}

	many := []byte("[")
	for i := range auth.MaxACLRules + 1 {
		if i > 0 {
			many = append(many, ',')
		}
		many = append(many, `{"permission":"allow","action":"publish","topic":"a"}`...)
	}
	many = append(many, ']')
	_, err = auth.ParseACLClaim(many)
	require.ErrorIs(t, err, auth.ErrMalformedACL)
}
