// Package evloop is the proxy's poller: edge-triggered epoll event loops
// that own sockets and report their readiness, with what a loop needs to
// serve many of them from one goroutine without a goroutine or a buffer
// per connection.
//
// A Loop dispatches each descriptor's events to the Handler registered
// for it, runs the tasks other goroutines Post to it, lends read buffers
// for a burst (BufPool), and does the reads and writes its handlers asked
// for during a turn together (IO, Do): in one io_uring system call where
// the kernel allows it, a system call each otherwise. Its Owner fires its
// timers (Wheel, a hashed timing wheel) and flushes its batch once a turn.
// Listen opens the SO_REUSEPORT listening sockets whose connections the
// loops accept themselves, one socket per loop. ReadFD, WriteFD and their
// kin are the raw non-blocking system calls underneath.
//
// It knows sockets and readiness only: nothing of HTTP, WebSockets, TLS
// or the proxy's connections, which are the handlers' and the owner's.
// A socket belongs to one loop from accept to close; everything of a Loop
// but Post runs on the loop's goroutine.
package evloop
