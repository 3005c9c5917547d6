package relay

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/mediaedge/mediaedge/internal/control"
)

// The operator's control API routes of the relay (docs/operations.md):
//
//	DELETE /v1/relay/allocations/{id}       end one allocation
//	DELETE /v1/relay/allocations?user=NAME  end every allocation of a user

// KillResult is the body of a successful DELETE on /v1/relay/allocations:
// the ids of the allocations ended.
type KillResult struct {
	Killed []uint64 `json:"killed"`
}

// endKilled is the accounting line's reason for an allocation ended by the
// operator.
const endKilled = "killed"

// Drain stops the relay from accepting new allocations: every Allocate is
// answered 486 (Allocation Quota Reached) and counted as
// mediaedge_relay_allocations_refused_total{reason="draining"}. Live
// allocations keep relaying and refreshing until their clients end them.
// It is safe for concurrent use and idempotent; only a restart undoes it.
func (s *Server) Drain() {
	if s.draining.Swap(true) {
		return
	}
	s.mu.Lock()
	n := len(s.allocs)
	s.mu.Unlock()
	s.log.Info("draining: new allocations are refused (486)", "allocations", n)
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// Active returns the number of live allocations (including those being
// created).
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.allocs) + s.pending
}

// Kill ends allocation id the way max_duration does: its relay socket
// closes, pion's reader of that socket sees net.ErrClosed and deletes the
// allocation from its manager (which pion/turn v5 keeps internal: closing
// the relay socket is the seam it offers), and the accounting line says
// reason=killed. pion answers a later Refresh of the client with nothing
// (not 437), so the client times out and allocates again. It returns
// ErrNoAllocation when there is no such allocation.
func (s *Server) Kill(id uint64) error {
	s.mu.Lock()
	a := s.allocs[id]
	s.mu.Unlock()
	if a == nil || a.route.Load() == nil {
		return fmt.Errorf("%w: id %d", ErrNoAllocation, id)
	}
	s.kill(a)
	return nil
}

// KillUser ends every allocation of user and returns their ids, oldest
// first. user matches the TURN username, or for REST credentials
// ("<expiry>:<name>") the name after the colon. It returns ErrNoAllocation
// when the user has none.
func (s *Server) KillUser(user string) ([]uint64, error) {
	var as []*alloc
	s.mu.Lock()
	for _, a := range s.allocs {
		if a.route.Load() != nil && userMatches(a.user(), user) {
			as = append(as, a)
		}
	}
	s.mu.Unlock()
	if len(as) == 0 {
		return nil, fmt.Errorf("%w of user %q", ErrNoAllocation, clipName(user))
	}
	sort.Slice(as, func(i, j int) bool { return as[i].id < as[j].id })
	ids := make([]uint64, 0, len(as))
	for _, a := range as {
		s.kill(a)
		ids = append(ids, a.id)
	}
	return ids, nil
}

func (s *Server) kill(a *alloc) {
	a.setEndReason(endKilled)
	a.close()
}

// userMatches reports whether the allocation's username is user, directly
// or as the name part of a REST username "<expiry>:<name>".
func userMatches(username, user string) bool {
	if username == user {
		return true
	}
	exp, name, ok := strings.Cut(username, ":")
	if !ok || name != user {
		return false
	}
	_, err := strconv.ParseInt(exp, 10, 64)
	return err == nil
}

// clipName bounds a user-supplied name in error messages.
func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (s *Server) opsRoutes(c *control.Server) {
	c.HandleFunc("DELETE /v1/relay/allocations/{id}", s.serveKill)
	c.HandleFunc("DELETE /v1/relay/allocations", s.serveKillUser)
}

func (s *Server) serveKill(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, "relay: allocation id: want a positive integer")
		return
	}
	if err := s.Kill(id); err != nil {
		writeOpsErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, KillResult{Killed: []uint64{id}})
}

func (s *Server) serveKillUser(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" {
		control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest,
			"relay: name the allocations to end: /v1/relay/allocations/{id} or ?user=NAME (to end all, drain the daemon)")
		return
	}
	ids, err := s.KillUser(user)
	if err != nil {
		writeOpsErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, KillResult{Killed: ids})
}

func writeOpsErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoAllocation):
		control.WriteError(w, http.StatusNotFound, control.CodeNotFound, err.Error())
	default:
		control.WriteError(w, http.StatusInternalServerError, control.CodeInternal, err.Error())
	}
}
