package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wsedge/wsedge/upstream"
)

// gossipRejections exports the gossip metadata a Set refused or corrected,
// by reason, as wsedge_gossip_metadata_rejected_total. The counts live in
// the Set, which counts whether or not anyone scrapes; the collector reads
// them at each scrape, so nothing here needs updating as they change.
type gossipRejections struct {
	set  *upstream.Set
	desc *prometheus.Desc
}

func newGossipRejections(set *upstream.Set) *gossipRejections {
	return &gossipRejections{
		set: set,
		desc: prometheus.NewDesc("wsedge_gossip_metadata_rejected_total",
			"Gossip node metadata refused before it reached the ring, by reason (unreadable, oversized, "+
				"bad_address, address_not_allowed, bad_weight), or accepted with its weight capped at 1000 "+
				"(weight_capped). Anything but zero means a node speaks another version or is not one of ours.",
			[]string{"reason"}, nil),
	}
}

func (g *gossipRejections) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gossipRejections) Collect(ch chan<- prometheus.Metric) {
	for reason, n := range g.set.GossipRejections() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.CounterValue, float64(n), reason)
	}
}
