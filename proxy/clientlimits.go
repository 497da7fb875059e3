package proxy

// clientLimits is the state of one client's rate limits (client_messages_
// per_second, client_bytes_per_second): a bucket of messages and one of
// bytes, and how long the client has been over them. Only connections
// whose config sets a limit carry one. The relay's alone.
type clientLimits struct {
	msgs, bytes bucket
	overSince   int64 // when the client went over; 0 while within
	until       int64 // reads wait until then; 0 while the client is read
}

// newClientLimits returns the state for cfg's limits, or nil when it sets
// none.
func newClientLimits(cfg *Config) *clientLimits {
	if cfg.ClientMessagesPerSecond <= 0 && cfg.ClientBytesPerSecond <= 0 {
		return nil
	}
	return &clientLimits{}
}

// spend takes what the client sent, messages and bytes, at now, and says
// what follows: slowed, with until set when reads must wait; closing, when
// the client has been over its limits for the grace.
func (l *clientLimits) spend(cfg *Config, messages, bytes uint64, now int64) (slowed, closing bool) {
	mr, mb := float64(cfg.ClientMessagesPerSecond), float64(cfg.ClientMessageBurst)
	br := float64(cfg.ClientBytesPerSecond)
	over := false
	if mr > 0 && !l.msgs.spend(float64(messages), mr, mb, now) {
		over = true
	}
	if br > 0 && !l.bytes.spend(float64(bytes), br, br, now) {
		over = true
	}
	if !over {
		// A client paced at its limit spends each token as it comes and
		// is over again at once; it is within its limits again only once
		// its buckets have filled up halfway, sending less than its rate.
		if (mr <= 0 || l.msgs.tokens >= mb/2) && (br <= 0 || l.bytes.tokens >= br/2) {
			l.overSince = 0
		}
		return false, false
	}
	slowed = l.until == 0
	if l.overSince == 0 {
		l.overSince = now
	}
	// Reads wait until every bucket is out of debt.
	wait := max(l.msgs.wait(0, mr, mb, now), l.bytes.wait(0, br, br, now))
	l.until = now + max(wait, 1)
	return slowed, now-l.overSince >= int64(cfg.RateLimitGrace)
}

// deadline is when the limits next need a look: reads to resume.
func (l *clientLimits) deadline() int64 { return l.until }

// resume reports whether reads may go on at now, and if so clears the
// wait.
func (l *clientLimits) resume(now int64) bool {
	if l.until == 0 || now < l.until {
		return false
	}
	l.until = 0
	return true
}

// waiting reports whether reads wait at now.
func (l *clientLimits) waiting(now int64) bool { return l != nil && l.until > now }
