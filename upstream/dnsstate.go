package upstream

import "slices"

// dnsState is what the lookups of one DNS name so far make of it: the
// backends believed, and the runs of failures and empty answers that have
// not changed them. It is a plain value with no clock and no I/O; its
// owner feeds it results in order.
//
// The rules:
//   - a lookup that fails (a timeout, a server gone, SERVFAIL) changes
//     nothing, however long the outage: a DNS outage never empties the
//     ring;
//   - an answer with no records (NXDOMAIN, or no answer of the type
//     asked) for a name that has backends is believed only when the next
//     answer says the same, failures in between aside: one stray NXDOMAIN,
//     from a resolver restarting or a zone reloading, must not close every
//     client;
//   - any other answer is believed at once.
type dnsState struct {
	backends []Backend // believed, sorted by Addr
	answered bool      // an answer has been believed
	doubted  bool      // the latest answer had no records and is not believed yet
	failures int       // lookups failed in a row
}

// dnsOutcome is what one lookup did to a dnsState.
type dnsOutcome struct {
	changed   bool   // the backends believed changed, or the first answer came
	failing   bool   // the lookup failed after one that did not: an outage begins
	recovered int    // the lookup answered after this many failed in a row
	doubted   bool   // no records, and not believed yet
	emptied   bool   // no records a second time: the backends leave
	count     string // the kind of wsedge_dns_errors_total to count; "" for none
}

// observe folds in the result of one lookup: its answer, or why it failed.
func (st *dnsState) observe(a dnsAnswer, err error) dnsOutcome {
	var out dnsOutcome
	if err != nil {
		out.count = errorKind(err)
		st.failures++
		out.failing = st.failures == 1
		return out
	}
	out.recovered, st.failures = st.failures, 0
	if len(a.backends) == 0 {
		out.count = kindNoRecords
		if len(st.backends) > 0 && !st.doubted {
			st.doubted, out.doubted = true, true
			return out
		}
		out.emptied = len(st.backends) > 0
	}
	st.doubted = false
	out.changed = !st.answered || !slices.Equal(st.backends, a.backends)
	st.backends, st.answered = a.backends, true
	return out
}
