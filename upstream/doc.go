// Package upstream owns the set of backends a proxy routes to: the static
// list from the config, members discovered by gossip, and their health. It
// publishes an immutable Snapshot of the backends that belong in the ring
// whenever that changes; readers keep a snapshot as long as they like.
package upstream
