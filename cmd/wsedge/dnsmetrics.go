package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/upstream"
)

// dnsErrors exports the failed lookups of the DNS names of [[upstream]],
// by name and kind, as wsedge_dns_errors_total. The counts live in the
// Set, which counts whether or not anyone scrapes; the collector reads
// them at each scrape.
type dnsErrors struct {
	set  *upstream.Set
	desc *prometheus.Desc
}

func newDNSErrors(set *upstream.Set) *dnsErrors {
	return &dnsErrors{
		set: set,
		desc: prometheus.NewDesc("wsedge_dns_errors_total",
			"Lookups of an [[upstream]] DNS name (its address or srv, as the config writes it) that failed, by kind: "+
				"timeout, unreachable, servfail, refused, bad_answer, no_server (no resolver and none in "+
				"/etc/resolv.conf); each kept the backends the name last gave. no_records counts answers with no "+
				"records, believed only when two come in a row.",
			[]string{"name", "kind"}, nil),
	}
}

func (d *dnsErrors) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *dnsErrors) Collect(ch chan<- prometheus.Metric) {
	for name, kinds := range d.set.DNSErrors() {
		for kind, n := range kinds {
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(n), name, kind)
		}
	}
}
