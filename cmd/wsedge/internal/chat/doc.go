// Package chat is the app server `wsedge demo` runs behind the proxy: a
// chat room whose clients are spread over several servers, each holding
// its own clients and fanning every message out to the others through a
// Broker (Redis pub/sub, or an in-process one when the servers share a
// process). It is the system wsedge is for, small enough to read, and it
// does what a good app server behind wsedge should:
//
//   - Heartbeats. A server pings each client every PingInterval and drops
//     one that has sent nothing, pong included, within PingInterval plus
//     PongTimeout, with close code 1008 (RFC 6455 section 7.4.1). Through
//     wsedge these pings and pongs pass end to end; the proxy's own
//     heartbeats run beside them.
//   - A bounded send queue per client, QueueLen messages. A client whose
//     queue is full when a message is due, or whose socket takes no write
//     for WriteTimeout, is dropped with 1008 "slow consumer": the room never
//     waits for it, and it never misses a message silently. Dropping the
//     oldest messages instead would leave gaps nobody is told of; a dropped
//     client reconnects and gets the room's recent history.
//   - Reconnects. A client told 1012 (its server left the proxy's ring),
//     1001 (a server shutting down) or cut off reconnects with backoff and
//     lands on its new owner; it keeps its id and nick, and the new server
//     sends it the last History messages, so that what it missed while
//     moving is mostly filled in (the page drops duplicates by message id).
//
// # Order and loss
//
// Every message, the sender's own server included, is delivered through
// the broker, so every server sees the room in the broker's order. A
// client's messages are published one at a time, each after the broker
// took the one before, so they arrive everywhere in the order sent. While
// the broker is unreachable, messages cannot be published (the sender is
// told, with an "error" message naming the one lost) and servers miss
// what others published: Redis pub/sub keeps nothing for a subscriber that
// is not connected. Servers resubscribe when Redis is back, and the room
// carries on from there.
//
// # Wire
//
// Clients connect to /ws?id=ID&nick=NICK (both optional; the page keeps
// them per tab so that a reconnect is the same member) and send text: a
// JSON object {"text": "..."}, or anything else, taken as the text itself.
// Servers send JSON objects with a "type": "hello" (who the server is),
// "history", "chat", "members" (at most one per MembersInterval, and only
// when the room's membership changed), "broker" (the broker's link went
// down or came back) and "error". Servers tell each other who is connected
// with "presence" messages through the broker every PresenceInterval; a
// server not heard from for three intervals is taken as gone, with its
// members.
package chat
