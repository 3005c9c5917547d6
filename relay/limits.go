package relay

import (
	"errors"
	"net"
	"time"
)

// reserve counts a new allocation of user against the quotas; it is the
// hard check behind QuotaHandler (two requests racing past the handler
// cannot both take the last place). The caller must call unreserve or
// register the allocation.
func (s *Server) reserve(user string) (*userState, error) {
	lim := s.limits.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.draining.Load() {
		return nil, errDraining
	}
	u := s.users[user]
	if lim.MaxAllocations > 0 && len(s.allocs)+s.pending >= lim.MaxAllocations {
		return nil, errQuota
	}
	if u != nil && lim.MaxAllocationsPerUser > 0 && u.allocs >= lim.MaxAllocationsPerUser {
		return nil, errQuota
	}
	if u == nil {
		u = &userState{name: user}
		now := s.nanotime()
		if b := newBucket(int64(lim.BitratePerUser), now); b != nil {
			u.buckets[dirToPeer].Store(b)
			u.buckets[dirToClient].Store(newBucket(int64(lim.BitratePerUser), now))
		}
		s.users[user] = u
	}
	u.allocs++
	s.pending++
	return u, nil
}

// unreserve undoes reserve after a failure.
func (s *Server) unreserve(u *userState) {
	s.mu.Lock()
	s.pending--
	s.dropUserLocked(u)
	s.mu.Unlock()
}

func (s *Server) dropUserLocked(u *userState) {
	u.allocs--
	if u.allocs <= 0 && s.users[u.name] == u {
		delete(s.users, u.name)
	}
}

// refuse counts and logs an allocation refused after authentication.
func (s *Server) refuse(err error, user string) {
	reason := "other"
	switch {
	case errors.Is(err, errQuota):
		reason = "quota_total"
		if lim := s.limits.Load(); lim.MaxAllocationsPerUser > 0 {
			s.mu.Lock()
			if u := s.users[user]; u != nil && u.allocs >= lim.MaxAllocationsPerUser {
				reason = "quota_user"
			}
			s.mu.Unlock()
		}
	case errors.Is(err, errPortsExhausted):
		reason = "ports_exhausted"
	case errors.Is(err, errDraining):
		reason = "draining"
	case errors.Is(err, errClosed):
		return
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	if s.auth.logRate.allow() {
		s.log.Warn("allocation refused", "reason", reason, "user", user, "err", err)
	}
}

// quota is pion's QuotaHandler: 486 when the user or the relay is full.
func (s *Server) quota(user, _ string, src net.Addr) bool {
	lim := s.limits.Load()
	s.mu.Lock()
	total := len(s.allocs) + s.pending
	n := 0
	if u := s.users[user]; u != nil {
		n = u.allocs
	}
	s.mu.Unlock()
	reason := ""
	switch {
	case s.draining.Load():
		reason = "draining"
	case lim.MaxAllocationsPerUser > 0 && n >= lim.MaxAllocationsPerUser:
		reason = "quota_user"
	case lim.MaxAllocations > 0 && total >= lim.MaxAllocations:
		reason = "quota_total"
	}
	if reason == "" {
		return true
	}
	s.metrics.refused.WithLabelValues(reason).Inc()
	// A client can retry at line rate: at most as many lines as for
	// authentication failures.
	if s.auth.logRate.allow() {
		s.log.Info("allocation refused (486)", "reason", reason, "user", user, "client", addrString(src),
			"user_allocations", n, "total_allocations", total)
	}
	return false
}

// housekeeping enforces max_duration once a second until Close.
func (s *Server) housekeeping() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.foldFast()
		maxD := s.limits.Load().MaxDuration.D()
		if maxD <= 0 {
			continue
		}
		var old []*alloc
		s.mu.Lock()
		for _, a := range s.allocs {
			if a.age() >= maxD {
				old = append(old, a)
			}
		}
		s.mu.Unlock()
		for _, a := range old {
			a.setEndReason("max_duration")
			a.close()
		}
	}
}
