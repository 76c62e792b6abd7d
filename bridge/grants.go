package bridge

import (
	"fmt"

	"github.com/mqttsec/mqttsec"
	"github.com/mqttsec/mqttsec/topic"
)

// LocalGrants returns exactly what the bridge needs on the local broker:
// subscribe (and receive) on the local filter of every out or both mapping,
// publish on the local topics of every in or both mapping and on
// StatusTopic. A broker that runs the bridge in process ("mqttsec serve")
// gives these grants to the bridge's identity and nothing more.
//
// It fails when a topic contains a placeholder (%u, %c, ${username},
// ${clientid}): the bridge takes it literally, an authorizer would expand it.
func (c Config) LocalGrants() ([]mqttsec.Grant, error) {
	return c.grants(true)
}

// RemoteGrants is LocalGrants for the remote broker: what its access
// control must allow the bridge's user (subscribe on the remote filter of
// in mappings, publish on the remote topics of out mappings and on
// RemoteStatusTopic), for example as Mosquitto "topic" lines.
func (c Config) RemoteGrants() ([]mqttsec.Grant, error) {
	return c.grants(false)
}

func (c Config) grants(local bool) ([]mqttsec.Grant, error) {
	var gs []mqttsec.Grant
	add := func(a mqttsec.Access, t string) error {
		if topic.HasPlaceholder(t) {
			return fmt.Errorf("%w: bridge %q: topic %q contains a placeholder an authorizer would expand", ErrInvalid, c.Name, t)
		}
		for i := range gs {
			if gs[i].Topic == t {
				gs[i].Access |= a
				return nil
			}
		}
		gs = append(gs, mqttsec.Grant{Allow: true, Access: a, Topic: t})
		return nil
	}
	for _, m := range c.Topics {
		prefix := m.RemotePrefix
		if local {
			prefix = m.LocalPrefix
		}
		t := prefix + m.Pattern
		// Local: out mappings are read, in mappings written; remote: the reverse.
		if m.Direction.out() {
			a := mqttsec.Subscribe
			if !local {
				a = mqttsec.Publish
			}
			if err := add(a, t); err != nil {
				return nil, err
			}
		}
		if m.Direction.in() {
			a := mqttsec.Publish
			if !local {
				a = mqttsec.Subscribe
			}
			if err := add(a, t); err != nil {
				return nil, err
			}
		}
	}
	status := c.RemoteStatusTopic
	if local {
		status = c.StatusTopic
	}
	if status != "" {
		if err := add(mqttsec.Publish, status); err != nil {
			return nil, err
		}
	}
	return gs, nil
}
