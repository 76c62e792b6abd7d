package acl

import (
	"errors"

	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/persist"
)

// errNotImplemented is the error text Casbin treats as "this adapter does
// not support the call".
var errNotImplemented = errors.New("not implemented")

// policyAdapter wraps the enforcer's adapter so that every load of the
// policy (LoadPolicy, LoadFilteredPolicy, a watcher-driven reload) rebuilds
// the index from the model the adapter filled.
type policyAdapter struct {
	c     *Casbin
	inner persist.Adapter
}

// loadOK reports whether Casbin will install the model the adapter just
// filled: the adapter succeeded (Casbin ignores one error text) and every g
// line has two names (Casbin's role-link build fails otherwise and keeps
// the old model).
func loadOK(err error, m model.Model) bool {
	if err != nil && err.Error() != "invalid file path, file path cannot be empty" {
		return false
	}
	_, g := policyOf(m)
	for _, r := range g {
		if len(r) < 2 {
			return false
		}
	}
	return true
}

func (a *policyAdapter) LoadPolicy(m model.Model) error {
	err := a.inner.LoadPolicy(m)
	if loadOK(err, m) {
		a.c.rebuildLoad(m, true)
	}
	return err
}

func (a *policyAdapter) SavePolicy(m model.Model) error { return a.inner.SavePolicy(m) }

func (a *policyAdapter) AddPolicy(sec, ptype string, rule []string) error {
	return a.inner.AddPolicy(sec, ptype, rule)
}

func (a *policyAdapter) RemovePolicy(sec, ptype string, rule []string) error {
	return a.inner.RemovePolicy(sec, ptype, rule)
}

func (a *policyAdapter) RemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	return a.inner.RemoveFilteredPolicy(sec, ptype, fieldIndex, fieldValues...)
}

func (a *policyAdapter) LoadFilteredPolicy(m model.Model, filter any) error {
	fa, ok := a.inner.(persist.FilteredAdapter)
	if !ok {
		return errors.New("filtered policies are not supported by this adapter")
	}
	err := fa.LoadFilteredPolicy(m, filter)
	// Casbin loads a filtered policy into its live model, which it cleared
	// first, and keeps whatever the adapter filled even when the load fails
	// (with role links it did not rebuild). The old index would then allow
	// rules the enforcer no longer has: deny everything instead until the
	// next successful load or Refresh.
	a.c.rebuildLoad(m, loadOK(err, m))
	return err
}

func (a *policyAdapter) IsFiltered() bool {
	fa, ok := a.inner.(persist.FilteredAdapter)
	return ok && fa.IsFiltered()
}

func (a *policyAdapter) AddPolicies(sec, ptype string, rules [][]string) error {
	if ba, ok := a.inner.(persist.BatchAdapter); ok {
		return ba.AddPolicies(sec, ptype, rules)
	}
	return errNotImplemented
}

func (a *policyAdapter) RemovePolicies(sec, ptype string, rules [][]string) error {
	if ba, ok := a.inner.(persist.BatchAdapter); ok {
		return ba.RemovePolicies(sec, ptype, rules)
	}
	return errNotImplemented
}

func (a *policyAdapter) UpdatePolicy(sec, ptype string, oldRule, newRule []string) error {
	if ua, ok := a.inner.(persist.UpdatableAdapter); ok {
		return ua.UpdatePolicy(sec, ptype, oldRule, newRule)
	}
	return errNotImplemented
}

func (a *policyAdapter) UpdatePolicies(sec, ptype string, oldRules, newRules [][]string) error {
	if ua, ok := a.inner.(persist.UpdatableAdapter); ok {
		return ua.UpdatePolicies(sec, ptype, oldRules, newRules)
	}
	return errNotImplemented
}

func (a *policyAdapter) UpdateFilteredPolicies(sec, ptype string, newRules [][]string, fieldIndex int, fieldValues ...string) ([][]string, error) {
	if ua, ok := a.inner.(persist.UpdatableAdapter); ok {
		return ua.UpdateFilteredPolicies(sec, ptype, newRules, fieldIndex, fieldValues...)
	}
	return nil, errNotImplemented
}

// policyWatcher is the watcher NewCasbin installs: the enforcer calls it
// after every policy API change; it patches the index and forwards the
// notification to the user's watcher, if any.
type policyWatcher struct {
	c     *Casbin
	inner persist.Watcher
}

func (w *policyWatcher) SetUpdateCallback(f func(string)) error {
	if w.inner != nil {
		return w.inner.SetUpdateCallback(f)
	}
	return nil
}

func (w *policyWatcher) Update() error {
	w.c.watcherRefresh()
	if w.inner != nil {
		return w.inner.Update()
	}
	return nil
}

func (w *policyWatcher) Close() {
	if w.inner != nil {
		w.inner.Close()
	}
}

func (w *policyWatcher) ex() (persist.WatcherEx, bool) {
	x, ok := w.inner.(persist.WatcherEx)
	return x, ok
}

func (w *policyWatcher) UpdateForAddPolicy(sec, ptype string, params ...string) error {
	if ptype == "p" || ptype == "g" {
		w.c.patch(sec, change{params, 1})
	}
	if x, ok := w.ex(); ok {
		return x.UpdateForAddPolicy(sec, ptype, params...)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForRemovePolicy(sec, ptype string, params ...string) error {
	if ptype == "p" || ptype == "g" {
		w.c.patch(sec, change{params, -1})
	}
	if x, ok := w.ex(); ok {
		return x.UpdateForRemovePolicy(sec, ptype, params...)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForRemoveFilteredPolicy(sec, ptype string, fieldIndex int, fieldValues ...string) error {
	w.c.watcherRefresh()
	if x, ok := w.ex(); ok {
		return x.UpdateForRemoveFilteredPolicy(sec, ptype, fieldIndex, fieldValues...)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForSavePolicy(m model.Model) error {
	if x, ok := w.ex(); ok {
		return x.UpdateForSavePolicy(m)
	}
	return w.forward()
}

// Batch changes rebuild: with AddPoliciesEx Casbin reports rules that
// already existed, so counting them would be wrong.
func (w *policyWatcher) UpdateForAddPolicies(sec, ptype string, rules ...[]string) error {
	w.c.watcherRefresh()
	if x, ok := w.ex(); ok {
		return x.UpdateForAddPolicies(sec, ptype, rules...)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForRemovePolicies(sec, ptype string, rules ...[]string) error {
	w.c.watcherRefresh()
	if x, ok := w.ex(); ok {
		return x.UpdateForRemovePolicies(sec, ptype, rules...)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForUpdatePolicy(sec, ptype string, oldRule, newRule []string) error {
	if ptype == "p" || ptype == "g" {
		w.c.patch(sec, change{oldRule, -1}, change{newRule, 1})
	} else {
		w.c.watcherRefresh()
	}
	if x, ok := w.inner.(persist.UpdatableWatcher); ok {
		return x.UpdateForUpdatePolicy(sec, ptype, oldRule, newRule)
	}
	return w.forward()
}

func (w *policyWatcher) UpdateForUpdatePolicies(sec, ptype string, oldRules, newRules [][]string) error {
	w.c.watcherRefresh()
	if x, ok := w.inner.(persist.UpdatableWatcher); ok {
		return x.UpdateForUpdatePolicies(sec, ptype, oldRules, newRules)
	}
	return w.forward()
}

func (w *policyWatcher) forward() error {
	if w.inner != nil {
		return w.inner.Update()
	}
	return nil
}

var (
	_ persist.WatcherEx        = (*policyWatcher)(nil)
	_ persist.UpdatableWatcher = (*policyWatcher)(nil)
	_ persist.FilteredAdapter  = (*policyAdapter)(nil)
	_ persist.BatchAdapter     = (*policyAdapter)(nil)
	_ persist.UpdatableAdapter = (*policyAdapter)(nil)
)
