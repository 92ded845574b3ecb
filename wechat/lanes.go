package wechat

import "time"

// The scheduling of a Sender's messages: one lane per user, lanes taken
// by workers in turn, lanes parked while a retry's backoff runs.

// lane holds one user's messages. A lane is in Sender.lanes while it has
// messages or a worker holds it or it is parked, and it is held by at
// most one worker, or parked, or in ready: that is what keeps one user's
// messages in order.
type lane struct {
	openid string
	jobs   []*job
	retry  *job        // tried and due again, before jobs
	timer  *time.Timer // ends the retry's backoff
}

// worker takes one message of the oldest ready lane at a time, so a user
// with many messages does not starve the others, and returns once the
// Sender is closed and nothing is left to take or waiting for a retry.
func (s *Sender) worker() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		for len(s.ready) == 0 && (!s.closed || s.parked > 0) {
			s.cond.Wait()
		}
		if len(s.ready) == 0 {
			s.mu.Unlock()
			return
		}
		l := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		j := l.retry
		if j != nil {
			l.retry = nil
		} else {
			j = l.jobs[0]
			l.jobs[0] = nil
			l.jobs = l.jobs[1:]
		}
		s.queued--
		s.n.queued.Add(-1)
		s.mu.Unlock()

		wait := s.deliver(j)

		s.mu.Lock()
		switch {
		case wait > 0 && !s.aborted:
			// The lane waits out the backoff, so the user's next
			// messages stay behind this one, but the worker does not.
			l.retry = j
			s.parked++
			s.queued++
			s.n.queued.Add(1)
			l.timer = time.AfterFunc(wait, func() { s.unpark(l) })
		case wait > 0:
			// Shutdown gave up while this try ran: the retry is
			// dropped like everything else still waiting.
			s.mu.Unlock()
			s.finish(j, s.abandoned(j), time.Since(j.started))
			s.mu.Lock()
			s.dropLane(l)
		case len(l.jobs) > 0:
			s.ready = append(s.ready, l)
			s.cond.Signal()
		default:
			delete(s.lanes, l.openid)
		}
		s.mu.Unlock()
	}
}

// unpark makes a lane whose retry backoff ended ready again.
func (s *Sender) unpark(l *lane) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.retry == nil || l.timer == nil { // Shutdown dropped it
		return
	}
	l.timer = nil
	s.parked--
	s.ready = append(s.ready, l)
	s.cond.Broadcast() // also wakes a worker waiting only for parked lanes to end
}

// dropLane forgets a lane whose messages were all dropped.
func (s *Sender) dropLane(l *lane) {
	if len(l.jobs) == 0 && l.retry == nil {
		delete(s.lanes, l.openid)
	}
}

// abandoned is the outcome of a message Shutdown gave up on.
func (s *Sender) abandoned(j *job) outcome {
	o := j.o
	o.reason, o.err = ReasonShutdown, nil
	return o
}

// janitor drops expired statuses and window entries until the workers end.
func (s *Sender) janitor() {
	t := time.NewTicker(max(min(s.o.StatusTTL/4, 10*time.Minute), time.Second))
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.status.deleteExpired()
			if s.o.Window != nil {
				s.o.Window.Prune(now)
			}
		}
	}
}
