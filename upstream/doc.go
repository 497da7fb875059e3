// Package upstream owns the set of backends a proxy routes to: the static
// list from the config, members discovered by gossip, and their health. It
// publishes an immutable Snapshot of the backends that belong in the ring
// whenever that changes; readers keep a snapshot as long as they like.
//
// # Health
//
// A Set from New checks every backend it knows, each on its own timer:
// "http" (GET a path, any 2xx passes), "websocket" (a real upgrade, a ping
// answered by a pong, a clean close: it catches a backend whose HTTP side
// answers while its WebSocket side is wedged) or "tcp" (connect). Rise
// passes in a row bring a backend into the ring and fall failures in a row
// take it out, so however a backend flaps the ring changes no faster than
// that. The proxy reports failed dials and 5xx answers to upgrades
// (ReportDialFailure, ReportUpgradeStatus); fall of them in a row take a
// backend out at once, and only active checks bring it back.
//
// Static backends start healthy, at start and on reload, so a restarted
// proxy routes at once and a backend added to the config takes traffic on
// reload; backends found by gossip must rise first.
//
// # DNS
//
// An [[upstream]] entry may name a host to resolve or SRV records
// (DNSName): every address is a backend, and Run looks the name up again
// every interval, sooner when the records' TTL runs out first. Addresses
// that appear join as gossiped backends do, through rise checks, and
// addresses that disappear leave. The first answer for a name stands for
// the config's list and is trusted as static backends are. A lookup that
// fails keeps what the name last gave, so a DNS outage never empties the
// ring; an answer with no records at all is believed only when the next
// lookup agrees. DNSErrors counts the failed lookups.
//
// # Gossip
//
// With discovery on, the Set runs a hashicorp/memberlist node. Proxies and
// agents (`wsedge agent`, see Agent) form one cluster; each node gossips
// small versioned metadata: its role, and for a backend its address,
// weight and state, alive or draining. A backend advertised alive enters
// the ring once the proxy's own checks pass rise times; one advertised
// draining leaves at once; one whose node dies leaves at once as
// StateDead. An agent drains before it leaves, which is how a proxy tells
// a departure from a death.
//
// memberlist calls its delegates with its own lock held: the Set's
// delegates only copy what they are given and signal, and Run folds the
// news in on its own goroutine.
//
// # Who may gossip
//
// memberlist admits any node that reaches its port, so the gossip key
// (DiscoveryConfig.SecretFile) is what keeps strangers out: with it, every
// packet is encrypted and authenticated, and a node without the key never
// joins. New and NewAgent refuse to gossip without a key on any address but
// a loopback one, unless AllowPlaintext asks for it. Members are still
// checked: a node's metadata is refused when it is larger than any node of
// this version sends, or when its backend address is not host:port with a
// real port and an IP address or DNS name, or lies outside AllowedBackends;
// a weight above 1000 counts as 1000. GossipRejections counts what was
// refused. And a backend a node advertises enters the ring only once the
// proxy's own checks pass.
package upstream
