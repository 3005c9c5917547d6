package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mediaedge/mediaedge/internal/control"
)

// The control API routes of the gateway (docs/gateway.md):
//
//	POST   /v1/sessions               create; answers with both legs' a=crypto lines
//	GET    /v1/sessions               list, without keys
//	GET    /v1/sessions/{id}          show, without keys
//	PATCH  /v1/sessions/{id}          change a leg's remote address or the peer's key
//	POST   /v1/sessions/{id}/rekey    new outbound key on one leg
//	DELETE /v1/sessions/{id}          end
//	GET    /v1/gateway/events         event log, long poll (?since=N&wait=20s)

// requestTimeout bounds the time a control request waits for a worker.
const requestTimeout = 10 * time.Second

func (g *Gateway) routes(c *control.Server) {
	c.HandleFunc("POST /v1/sessions", g.serveCreate)
	c.HandleFunc("GET /v1/sessions", g.serveList)
	c.HandleFunc("GET /v1/sessions/{id}", g.serveShow)
	c.HandleFunc("PATCH /v1/sessions/{id}", g.serveUpdate)
	c.HandleFunc("POST /v1/sessions/{id}/rekey", g.serveRekey)
	c.HandleFunc("DELETE /v1/sessions/{id}", g.serveDelete)
	c.HandleLongPoll("GET /v1/gateway/events", g.serveEvents)
}

func reqCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), requestTimeout)
}

func (g *Gateway) serveCreate(w http.ResponseWriter, r *http.Request) {
	var req CreateRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	info, err := g.Create(ctx, req)
	if err != nil {
		g.writeErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusCreated, info)
}

// ListResponse is the body of GET /v1/sessions.
type ListResponse struct {
	Sessions []SessionInfo `json:"sessions"`
}

func (g *Gateway) serveList(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	infos, err := g.Sessions(ctx)
	if err != nil {
		g.writeErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, ListResponse{Sessions: infos})
}

func (g *Gateway) serveShow(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	info, err := g.Session(ctx, r.PathValue("id"))
	if err != nil {
		g.writeErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, info)
}

func (g *Gateway) serveUpdate(w http.ResponseWriter, r *http.Request) {
	var req UpdateRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	info, err := g.Update(ctx, r.PathValue("id"), req)
	if err != nil {
		g.writeErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, info)
}

func (g *Gateway) serveRekey(w http.ResponseWriter, r *http.Request) {
	var req RekeyRequest
	if !control.DecodeJSON(w, r, &req) {
		return
	}
	ctx, cancel := reqCtx(r)
	defer cancel()
	res, err := g.Rekey(ctx, r.PathValue("id"), req.Leg)
	if err != nil {
		g.writeErr(w, err)
		return
	}
	control.WriteJSON(w, http.StatusOK, res)
}

func (g *Gateway) serveDelete(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := reqCtx(r)
	defer cancel()
	if err := g.Delete(ctx, r.PathValue("id")); err != nil {
		g.writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// EventsResponse is the body of GET /v1/gateway/events. Next is the since
// value of the following request.
type EventsResponse struct {
	Events []Event `json:"events"`
	Next   uint64  `json:"next"`
}

// maxEventWait bounds a long poll below the control server's write
// timeout.
const maxEventWait = 30 * time.Second

func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if s := q.Get("since"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, "since: want a non-negative integer")
			return
		}
		since = v
	}
	var wait time.Duration
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxEventWait {
			control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, "wait: want a duration from 0s to 30s")
			return
		}
		wait = d
	}
	limit := 1000
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > eventLogSize {
			control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, "limit: want 1 to 4096")
			return
		}
		limit = v
	}
	evs, next := g.events.since(r.Context(), since, limit, wait)
	if evs == nil {
		evs = []Event{}
	}
	control.WriteJSON(w, http.StatusOK, EventsResponse{Events: evs, Next: next})
}

// writeErr maps an error to its control API code. Messages never hold
// keys: errors about a=crypto lines describe them without key bytes.
func (g *Gateway) writeErr(w http.ResponseWriter, err error) {
	var re *RequestError
	var ce *CryptoError
	switch {
	case errors.As(err, &re), errors.As(err, &ce):
		control.WriteError(w, http.StatusBadRequest, control.CodeBadRequest, err.Error())
	case errors.Is(err, ErrNotFound):
		control.WriteError(w, http.StatusNotFound, control.CodeNotFound, err.Error())
	case errors.Is(err, ErrExists):
		control.WriteError(w, http.StatusConflict, control.CodeConflict, err.Error())
	case errors.Is(err, ErrLimit):
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeLimit, err.Error())
	case errors.Is(err, ErrDraining):
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, err.Error())
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnsupported):
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, "gateway: not running")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		control.WriteError(w, http.StatusServiceUnavailable, control.CodeUnavailable, "gateway: the data path did not answer in time")
	default:
		g.log.Error("control request failed", "err", err)
		control.WriteError(w, http.StatusInternalServerError, control.CodeInternal, err.Error())
	}
}
