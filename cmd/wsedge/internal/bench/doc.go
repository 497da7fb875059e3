// Package bench is wsedge's WebSocket load generator and the echo backend it
// measures against: the equipment behind `wsedge bench` and the side-by-side
// comparison with nginx, HAProxy and Caddy in testdata/bench.
//
// Five modes, each bounded in count and in time:
//
//   - Idle opens and holds N connections and reports what they cost the
//     proxy in resident memory (summed VmRSS of the processes given).
//   - Echo runs C closed loops (send one message, wait for its echo) and
//     reports messages per second, latency percentiles from an HDR
//     histogram, and messages per proxy CPU-second.
//   - Handshake runs W workers that connect, upgrade, close, repeat, and
//     reports handshakes per second and per proxy CPU-second.
//   - Broadcast puts N clients in a chat room through the proxy, says a
//     message every interval as one of them, and times each message from
//     its send to its arrival at every client (p50, p99, max, missing).
//   - Backend is the echo server the others talk to through the proxy. It
//     echoes each frame as it arrives and reports its own CPU, so that a
//     run can show the backend was not the bottleneck.
//
// # Limits of one process
//
// A process holds at most RLIMIT_NOFILE sockets. Where that limit is 20,000
// and cannot be raised, one generator holds about 19,000 connections and a
// proxy about 9,900 proxied ones (each is two sockets). Idle spreads a large
// N over several generator processes (IdleConfig.Procs) and over several
// targets (one per proxy instance); run several Backend processes, each
// with its own listen addresses, for the backend side.
//
// Each client connection binds a source address before connecting, taken
// round-robin from a Sources range such as 127.0.0.2-127.0.15.254, because
// one source address has only ~28,000 ephemeral ports towards one
// destination. Sources interleaves /24 networks so that proxies that key
// IPv4 clients by their first three octets (nginx ip_hash) still spread
// consecutive connections over their backends.
//
// # TLS and the PROXY protocol
//
// A wss:// target is reached over TLS (crypto/tls, Transport.TLS), with no
// session cache: every connection makes a full handshake, as a client
// coming for the first time does, and the handshake mode counts the key
// exchange each one negotiated. Transport.ProxyHeader opens every
// connection with a PROXY protocol header (v1 text or v2 binary, before
// TLS) naming the connection's own source and destination, as a balancer
// in front of the proxy would.
//
// Every target and every source must be a loopback address: the generator
// exists to compare proxies on one machine, and refusing anything else
// keeps a mistyped flag from flooding a real host.
//
// CPU figures come from /proc/PID/stat (utime+stime) of the processes named,
// read at the start and the end of the measured window; children of those
// processes are not included, so name every process of a proxy (nginx's
// master and each worker).
package bench
