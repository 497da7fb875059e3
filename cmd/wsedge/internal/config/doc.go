// Package config reads proxy.toml, the configuration file of the wsedge
// binary, into a [File] of plain typed values. TOML stops here: the rest of
// the program gets strings, numbers, [time.Duration] and [netip.Prefix]
// values, never a TOML type.
//
// [Load] and [Parse] check a document completely before accepting it, and
// report everything wrong with it at once as [Problems], each naming the
// file, the line and the full dotted key:
//
//	proxy.toml:12: websocket.ping_interval: invalid duration "20x" (want e.g. "20s")
//	proxy.toml:31: upstream[2].weight: 0 out of range (want 1..1000)
//
// Elements of arrays and arrays of tables are numbered from 0, as in
// upstream[0] for the first [[upstream]]. The checks cover TOML syntax,
// unknown keys and tables (with a suggestion for typos), wrong types, value
// formats, ranges and the rules that tie keys together, such as a TLS
// certificate without its key.
//
// Value formats:
//
//   - A duration is a Go duration string such as "20s" or "1m30s". Negative
//     durations are refused, and so is zero except where it switches
//     something off (websocket.ping_interval). The bare integer 0 is
//     accepted as a zero duration; other bare numbers are refused because
//     they carry no unit.
//   - A size is an integer number of bytes or a string of digits and a
//     unit: B, KiB, MiB and GiB are powers of 1024; kB (or KB), MB and GB
//     are powers of 1000, as IEC 80000-13 has it. "1MiB" is 1048576 bytes
//     and "1MB" is 1000000.
//   - An address is host:port with a numeric port, 1..65535. The host is an
//     IP address, IPv6 in brackets, or a DNS name; listeners (listen,
//     admin_listen, discovery.bind) may leave it empty for every local
//     address, as in ":8080".
//   - A CIDR is written "10.0.0.0/8"; a bare address is a network of one
//     (/32 or /128), and host bits are cleared.
//
// Keys a file leaves out keep their [Default] value, except [[upstream]]: a
// file that lists no upstream has none, since its backends may come from
// discovery, and a file with neither is refused. An [[upstream]] names one
// backend by address, or backends from DNS: every A/AAAA record of
// address's host when resolve is set, or the targets of srv; resolver then
// names the DNS server.
//
// proxy.toml.example at the root of the module documents every key with its
// default; the tests keep it complete and in step with [Default].
package config
