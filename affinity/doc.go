// Package affinity decides which backend a client belongs to.
//
// It has two halves. The first turns a request into a routing key: the
// client's IP address as seen through trusted proxies ([TrustedProxies]), a
// route cookie token ([Token], [Ring.ByToken]) or any string the caller
// picks, hashed with xxhash ([HashAddr], [HashString], [HashBytes]). The
// second maps that key onto a consistent-hash [Ring] of backends: each
// backend owns vnodes×weight points on a 64-bit circle and a key belongs to
// the first point at or after its hash, so adding one backend to N moves
// about 1/(N+1) of the keys, all of them to the new backend, and removing
// one moves only the keys it owned. [Diff] says exactly which arcs of the
// circle changed owner between two rings, and [Ring.LookupBounded]
// implements consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, 2016).
//
// Everything here is deterministic across processes and versions of the
// binary: the same member set yields the same ring on every proxy of a
// cluster, whatever order the members were listed in, and the golden file
// testdata/golden_routes.txt pins it, because a silent change of hash would
// move every sticky client at once.
//
// The package is pure: no I/O, no goroutines, no logging. A [Ring] is
// immutable once built and safe for concurrent use; lookups allocate
// nothing, so they can run on every request.
package affinity
