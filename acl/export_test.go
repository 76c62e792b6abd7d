package acl

// PatchForTest applies one policy-line change to the index only, as the
// watcher does after Casbin changed its model.
func (c *Casbin) PatchForTest(rule []string, d int32) { c.patch("p", change{rule, d}) }
